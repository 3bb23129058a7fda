"""The daemon on an accelerated schedule: several training and inference cycles in one process.

Intervals are seconds instead of hours and the daemon's ``now`` runs 2 simulated minutes per real
second, so a few seconds cover demo incidents. The model is tiny (2 epochs) and nearly every
window scores anomalous, which is what these tests need: they check the plumbing (outputs,
metrics, readiness, alerts, promotion), not detection quality (see ``test_demo_quality.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import torch

from ml_monitoring_service.config import (
    REPO_ROOT,
    EnvironmentSettings,
    ServiceSetConfig,
    load_config,
)
from ml_monitoring_service.daemon.metrics import DaemonMetrics, exported_names
from ml_monitoring_service.daemon.scheduler import Daemon
from ml_monitoring_service.pipeline.model_store import current_version, model_root, versions
from standins.alertmanager_server import RecordingWebhook, wait_until

torch.set_num_threads(1)

TINY_SET = """
  {name}:
    source: demo
    services: [frontend, cart, checkout, payment]
    relationships: {{frontend: [cart, checkout], checkout: [payment]}}
    metrics: {{cpu: q1, memory: q2, latency: q3, request_rate: q4, error_count: q5}}
    demo: {{seed: 3, incident_every: 20min, event_rate_per_min: 3}}
    preprocessing: {{window_size: 16, train_stride: 4, variants: ["grid:30s"]}}
    model: {{max_epochs: 2, patience: 1, windows_per_epoch: 64, d_model: 16, n_heads: 2,
             device: cpu}}
    schedule: {{training_interval: {training}, inference_interval: {inference},
               training_lookback: 2h, inference_lookback: 30min}}
    lifecycle: {{keep_versions: 2, max_training_anomaly_rate: 1.0, validation_tolerance: 100}}
    alerting: {{fire_min_anomalous: 2, window_count: 4}}
"""
BASE = pd.Timestamp("2024-03-04T12:00:00Z")


def tiny_sets(
    tmp_path: Path, *names: str, training: str = "4s", inference: str = "1s", extra: str = ""
) -> list[ServiceSetConfig]:
    """Small demo sets with second-scale schedules, from a YAML file like a deployment's."""
    body = "".join(TINY_SET.format(name=n, training=training, inference=inference) for n in names)
    path = tmp_path / "sets.yaml"
    path.write_text("service_sets:" + body + extra)
    app = load_config(path)
    return list(app.service_sets.values())


def sim_clock(speed_min_per_s: float = 2.0) -> Callable[[], pd.Timestamp]:
    """``now`` that starts at BASE and advances ``speed_min_per_s`` simulated minutes per second."""
    started = time.monotonic()

    def clock() -> pd.Timestamp:
        elapsed = pd.Timedelta(minutes=speed_min_per_s * (time.monotonic() - started))
        return (BASE + elapsed).floor("s")

    return clock


def daemon_env(tmp_path: Path, **overrides: object) -> EnvironmentSettings:
    values: dict[str, object] = {"output_dir": tmp_path / "output", "metrics_port": 0}
    return EnvironmentSettings(**{**values, **overrides})  # type: ignore[arg-type]


def scrape(daemon: Daemon) -> str:
    assert daemon.server is not None
    return requests.get(daemon.server.url + "/metrics", timeout=5).text


def sample(text: str, name: str, **labels: str) -> float | None:
    """Value of the first sample of ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


@pytest.fixture
def running() -> Iterator[Callable[[Daemon], Daemon]]:
    """Start daemons and always stop them, even when a test fails."""
    started: list[Daemon] = []

    def start(daemon: Daemon) -> Daemon:
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.mark.slow
def test_accelerated_cycles_write_outputs_export_metrics_and_alert(
    tmp_path: Path, running: Callable[[Daemon], Daemon]
) -> None:
    with RecordingWebhook() as webhook:
        env = daemon_env(tmp_path, alert_webhook_url=webhook.url)
        daemon = Daemon(tiny_sets(tmp_path, "tiny"), env, clock=sim_clock())
        assert daemon.server is not None
        running(daemon)
        ready = daemon.server.url + "/ready"
        first = requests.get(ready, timeout=5)
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.json()["missing_models"] == {"tiny": ["grid:30s"]}
        wait_until(lambda: requests.get(ready, timeout=5).status_code == 200, 60, "ready")
        assert requests.get(daemon.server.url + "/health", timeout=5).status_code == 200

        def cycles_done() -> bool:
            text = scrape(daemon)
            trained = sample(text, "ml_monitoring_job_duration_seconds_count", job="training")
            scored = sample(text, "ml_monitoring_job_duration_seconds_count", job="inference")
            return (trained or 0) >= 2 and (scored or 0) >= 4

        wait_until(cycles_done, 60, "two training and four inference runs")
        wait_until(lambda: any(b["event"] == "firing" for b in webhook.bodies()), 30, "an alert")

    text = scrape(daemon)
    assert sample(text, "ml_monitoring_threshold", service_set="tiny", variant="grid_30s")
    assert sample(text, "ml_monitoring_window_score", service_set="tiny") is not None
    assert sample(text, "ml_monitoring_service_score", service="payment") is not None
    assert sample(text, "ml_monitoring_metric_score", service="cart", metric="latency") is not None
    last = sample(text, "ml_monitoring_last_success_timestamp_seconds", job="inference")
    assert last is not None and abs(last - time.time()) < 30
    assert sample(text, "ml_monitoring_model_loaded", service_set="tiny") == 1
    assert 'ml_monitoring_model_info{service_set="tiny",variant="grid_30s",version="' in text
    assert sample(text, "ml_monitoring_alert_notifications_total", event="firing")
    assert all(line.startswith(("#", "ml_monitoring_")) for line in text.splitlines() if line)

    output = tmp_path / "output" / "tiny"
    summary = json.loads((output / "inference_summary_grid_30s.json").read_text())
    assert summary["windows_scored"] > 0
    assert (output / "score_timeline_grid_30s.png").exists()
    root = model_root(tmp_path / "output", "tiny", "grid_30s")
    assert current_version(root) is not None
    assert 1 <= len(versions(root)) <= 2  # keep_versions: 2
    state = json.loads((output / "alert_state.json").read_text())
    assert state["tracks"][0]["service_set"] == "tiny"

    firing = next(b for b in webhook.bodies() if b["event"] == "firing")
    assert firing["labels"]["service"] in {"frontend", "cart", "checkout", "payment"}
    assert firing["labels"]["metric"]
    assert firing["annotations"]["report"].endswith("inference_summary_grid_30s.json")


def test_alerts_without_receivers_are_logged(
    tmp_path: Path, running: Callable[[Daemon], Daemon], caplog: pytest.LogCaptureFixture
) -> None:
    daemon = running(Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), clock=sim_clock()))
    assert daemon.outbox is None
    wait_until(lambda: "ALERT FIRING" in caplog.text, 60, "a logged alert")
    line = next(r.getMessage() for r in caplog.records if "ALERT FIRING" in r.getMessage())
    assert "[tiny/grid_30s]" in line and "severity=" in line


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((REPO_ROOT / "config" / "grafana" / "ml_monitoring.json").read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(exprs) >= 5
    queried = {name for expr in exprs for name in re.findall(r"\bml_monitoring_\w+", expr)}
    exported = exported_names(DaemonMetrics())
    assert queried and queried <= exported, sorted(queried - exported)
    assert {"ml_monitoring_threshold", "ml_monitoring_alert_active"} <= queried


def test_cli_daemon_mode_reports_configuration_errors_with_exit_2(tmp_path: Path) -> None:
    from ml_monitoring_service.cli import main

    config = tmp_path / "sets.yaml"
    tiny_sets(tmp_path, "tiny")  # writes sets.yaml
    assert main(["--config", str(config), "--active-set", "tiny,missing"]) == 2
    assert main(["--config", str(config), "--active-set", "tiny,tiny", "--run-once-training"]) == 2


def test_a_busy_metrics_port_is_a_configuration_error(tmp_path: Path) -> None:
    from ml_monitoring_service.errors import ConfigError

    first = Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path))
    assert first.server is not None
    try:
        with pytest.raises(ConfigError, match="METRICS_PORT"):
            Daemon(
                tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path, metrics_port=first.server.port)
            )
    finally:
        first.server.stop()
