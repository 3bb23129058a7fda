"""Faults the daemon must survive: a failing job, an unreachable backend, a corrupt model, a full
disk during save, and SIGTERM in the middle of training."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import requests
from pydantic import SecretStr

from ml_monitoring_service.config import REPO_ROOT
from ml_monitoring_service.daemon.scheduler import Daemon
from ml_monitoring_service.detectors import WindowDetector
from ml_monitoring_service.detectors.transformer import TransformerAutoencoderDetector
from ml_monitoring_service.pipeline.model_store import current_version, model_root, versions
from standins.alertmanager_server import wait_until
from test_daemon import BASE, TINY_SET, daemon_env, running, sample, scrape, sim_clock, tiny_sets

__all__ = ["running"]  # the fixture, imported for pytest

LIVE_SET = """
  live:
    source: splunk+prometheus
    services: [api, db]
    metrics: {cpu: 'rate(cpu{service="$service"}[1m])'}
    log_query: 'search index=app service="$service"'
    collect: {timeout: 1s, attempts: 1, backoff: 1s}
    schedule: {training_interval: 2s, inference_interval: 1s}
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_set_failing_never_stops_another(
    tmp_path: Path, running: Callable[[Daemon], Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = Daemon(tiny_sets(tmp_path, "good", "bad"), daemon_env(tmp_path), clock=sim_clock())

    def broken(now: pd.Timestamp) -> None:
        raise RuntimeError("scoring exploded")

    monkeypatch.setattr(daemon.runners["bad"], "infer", broken)
    running(daemon)

    def both_seen() -> bool:
        text = scrape(daemon)
        good = sample(
            text, "ml_monitoring_job_duration_seconds_count", service_set="good", job="inference"
        )
        bad = sample(text, "ml_monitoring_job_failures_total", service_set="bad", job="inference")
        return (good or 0) >= 3 and (bad or 0) >= 2

    wait_until(both_seen, 60, "good set scoring while bad set fails")
    text = scrape(daemon)
    assert sample(text, "ml_monitoring_job_failures_total", service_set="bad", kind="internal")
    assert sample(text, "ml_monitoring_job_failures_total", service_set="good") is None


def test_unreachable_backend_is_counted_and_the_daemon_stays_up(
    tmp_path: Path, running: Callable[[Daemon], Daemon]
) -> None:
    closed = f"http://127.0.0.1:{closed_port()}"
    sets = tiny_sets(tmp_path, "tiny", extra=LIVE_SET)
    env = daemon_env(
        tmp_path,
        splunk_url=closed,
        splunk_token=SecretStr("t"),
        prometheus_url=closed,
    )
    daemon = running(Daemon(sets, env, clock=sim_clock()))
    assert daemon.server is not None

    def failed_twice() -> bool:
        text = scrape(daemon)
        return (sample(text, "ml_monitoring_job_failures_total", service_set="live") or 0) >= 2

    wait_until(failed_twice, 60, "two failed training runs of the live set")
    wait_until(lambda: not daemon.missing_models()["tiny"], 60, "the demo set trained")
    assert requests.get(daemon.server.url + "/health", timeout=5).status_code == 200
    ready = requests.get(daemon.server.url + "/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["missing_models"] == {
        "live": ["event", "grid:30s"]
    }


def _train_versions(tmp_path: Path, count: int) -> Path:
    daemon = Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), serve_http=False)
    for i in range(count):
        daemon.runners["tiny"].train(BASE + pd.Timedelta(minutes=10 * i))
    return model_root(tmp_path / "output", "tiny", "grid_30s")


def test_corrupt_current_model_falls_back_to_the_previous_version(tmp_path: Path) -> None:
    root = _train_versions(tmp_path, 2)
    previous, current = versions(root)
    assert current_version(root) == current
    (current / "metadata.json").write_text("{not json")
    daemon = Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), serve_http=False)
    assert daemon.runners["tiny"].models["grid_30s"].version == previous.name
    assert daemon.missing_models() == {"tiny": []}


def test_no_loadable_model_reports_not_ready(tmp_path: Path) -> None:
    root = _train_versions(tmp_path, 1)
    (root / versions(root)[0].name / "metadata.json").unlink()
    daemon = Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), serve_http=False)
    assert daemon.missing_models() == {"tiny": ["grid:30s"]}
    assert "ml_monitoring_model_loaded" in daemon.metrics.exposition().decode()


def test_disk_failure_during_save_keeps_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _train_versions(tmp_path, 1)
    before = current_version(root)
    daemon = Daemon(tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), serve_http=False)

    def full_disk(self: WindowDetector, directory: Path) -> None:
        (directory / "config.json").write_text("{")  # a partial write, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TransformerAutoencoderDetector, "save", full_disk)
    daemon._train("tiny")
    assert current_version(root) == before
    assert daemon.runners["tiny"].models["grid_30s"].version == before.name  # type: ignore[union-attr]
    assert not list(root.glob(".staging-*"))
    text = daemon.metrics.exposition().decode()
    assert sample(text, "ml_monitoring_job_failures_total", job="training", kind="internal") == 1


@pytest.mark.slow
def test_sigterm_during_training_leaves_a_complete_model_or_none(tmp_path: Path) -> None:
    slow = TINY_SET.format(name="tiny", training="1h", inference="1h").replace(
        "max_epochs: 2, patience: 1, windows_per_epoch: 64",
        "max_epochs: 5, patience: 5, windows_per_epoch: 128",
    )
    config = tmp_path / "sets.yaml"
    config.write_text("service_sets:" + slow)
    env = {
        **os.environ,
        "OUTPUT_DIR": str(tmp_path / "output"),
        "METRICS_PORT": "0",
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "ml_monitoring_service", "--config", str(config)]
    command += ["--active-set", "tiny", "--no-tracking", "--now", "2024-03-04T12:00:00"]
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "training on" in log.read_text(), 60, "training to start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "received SIGTERM" in text and "stopped" in text
    if "saved" in text:  # the running training finished after the signal, then the daemon stopped
        assert text.index("received SIGTERM") < text.index("saved") < text.index("stopped")
    root = model_root(tmp_path / "output", "tiny", "grid_30s")
    assert not list(root.glob(".staging-*"))
    version = current_version(root)
    if version is not None:
        WindowDetector.load(version)  # complete: loads without error
