"""The ``splunk+prometheus`` source end to end: stand-in Splunk + real Prometheus → outputs.

The demo generator provides the ground truth: its log events are served by the stand-in Splunk
(real splunk-sdk on the wire) and its metric values, sampled at the event times, are backfilled
into a real Prometheus. The CLI then trains and scores through the collectors exactly as it
would against production backends, in both Prometheus modes, and a second run with
``DOWNLOAD=false`` replays the cached download with both servers stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.cli import main
from ml_monitoring_service.collectors.live import collect_combined
from ml_monitoring_service.config import EnvironmentSettings, load_config
from ml_monitoring_service.data.demo import generate_demo
from standins.prometheus_server import Series, running_prometheus
from standins.splunk_server import running_splunk

SERVICES = ("frontend", "cart", "checkout", "payment")
EDGES = (("frontend", "cart"), ("frontend", "checkout"), ("checkout", "payment"))
METRICS = ("cpu", "memory", "latency", "request_rate", "error_count")
NOW = pd.Timestamp("2024-03-04T12:00:00Z")
TOKEN = "e2e-splunk-token"
LEVEL_NAMES = {0.0: "INFO", 1.0: "WARN", 2.0: "ERROR"}

METRIC_LINES = "".join(f"      {m}: 'demo_{m}{{service=\"$service\"}}'\n" for m in METRICS)
CONFIG = f"""
service_sets:
  live:
    source: splunk+prometheus
    services: [{", ".join(SERVICES)}]
    relationships: {{frontend: [cart, checkout], checkout: [payment]}}
    metrics:
{METRIC_LINES}
    log_query: 'search index=app service="$service" | fields _time service severity traceID'
    collect: {{prometheus_mode: MODE, step: 30s, timeout: 10s, attempts: 2, backoff: 0.1s}}
    preprocessing: {{window_size: 16, train_stride: 4, variants: [event, "grid:30s"]}}
    model: {{max_epochs: 2, patience: 2, windows_per_epoch: 128, d_model: 16, n_heads: 2}}
    schedule: {{training_lookback: 3h, inference_lookback: 1h}}
"""


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    """Four hours of demo telemetry ending at NOW, incidents included.

    Times are cut to milliseconds, the resolution Prometheus stores and queries at (Splunk's
    ``_time`` has the same), so a value stored at an event's time is the value read back there.
    """
    data = generate_demo(
        NOW - pd.Timedelta("4h"),
        NOW,
        seed=5,
        services=SERVICES,
        edges=EDGES,
        incident_every=pd.Timedelta("20min"),
        event_rate_per_min=3,
    )
    frame = data.frame.assign(timestamp=data.frame["timestamp"].dt.floor("ms"))
    return frame.drop_duplicates(["service", "timestamp"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def backends(demo: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Both servers, loaded with the demo: URLs plus the handles to inspect them."""
    events = [
        {
            "_time": row.timestamp.isoformat(),
            "service": row.service,
            "severity": LEVEL_NAMES[row.severity_level],
            "traceID": f"trace-{i}",
            "_raw": row.message,
        }
        for i, row in enumerate(demo.itertuples(index=False))
    ]
    history = []
    for service, rows in demo.groupby("service"):
        seconds = rows["timestamp"].astype("int64").to_numpy() / 1e9
        for metric in METRICS:
            samples = list(zip(seconds.tolist(), rows[metric].tolist(), strict=True))
            history.append(Series(f"demo_{metric}", {"service": str(service)}, samples))
    with (
        running_prometheus(history, tmp_path_factory.mktemp("prometheus")) as prometheus_url,
        running_splunk(events, token=TOKEN) as splunk,
    ):
        yield {"prometheus": prometheus_url, "splunk": splunk}


def _environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backends: dict, *, download: bool
) -> None:
    monkeypatch.setenv("SPLUNK_URL", backends["splunk"].url)
    monkeypatch.setenv("SPLUNK_TOKEN", TOKEN)
    monkeypatch.setenv("PROMETHEUS_URL", backends["prometheus"])
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOWNLOAD", "true" if download else "false")


def _config(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / "sets.yaml"
    path.write_text(CONFIG.replace("MODE", mode))
    return path


@pytest.mark.slow
def test_event_mode_reproduces_the_recorded_events_and_values(
    demo: pd.DataFrame, backends: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every inference-period event comes back with exactly the metric values it was stored with."""
    _environment(monkeypatch, tmp_path, backends, download=True)
    config = load_config(_config(tmp_path, "event")).service_set("live")
    start = NOW - pd.Timedelta("1h")
    frame = collect_combined(
        config, EnvironmentSettings.from_environment(), start, NOW, "inference"
    )
    expected = demo[(demo["timestamp"] >= start) & (demo["timestamp"] < NOW)]
    assert len(frame) == len(expected)
    key = ["timestamp", "service", "severity_level"]
    got = frame.sort_values(key, kind="stable").reset_index(drop=True)
    want = expected.sort_values(key, kind="stable").reset_index(drop=True)
    pd.testing.assert_series_equal(got["timestamp"], want["timestamp"], check_names=False)
    assert got["service"].tolist() == want["service"].tolist()
    np.testing.assert_array_equal(got["severity_level"], want["severity_level"])
    for metric in METRICS:
        np.testing.assert_allclose(got[metric], want[metric], rtol=1e-12, err_msg=metric)
    # Log text (multi-line traces included) arrives as sent, and the cached download replays it.
    assert sorted(got["message"]) == sorted(want["message"])
    assert got["message"].str.contains("\n\tat |\nTraceback", regex=True).any()
    # Trace ids arrive with their events: the ranking learns the call graph from them.
    assert sorted(got["trace_id"]) == sorted(f"trace-{i}" for i in expected.index)
    monkeypatch.setenv("DOWNLOAD", "false")
    replayed = collect_combined(
        config, EnvironmentSettings.from_environment(), start, NOW, "inference"
    )
    pd.testing.assert_frame_equal(replayed, frame)


@pytest.mark.slow
def test_range_mode_samples_on_the_step_grid(
    demo: pd.DataFrame, backends: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metric rows every 30 s per service, plus one row per log event with its severity."""
    _environment(monkeypatch, tmp_path, backends, download=True)
    config = load_config(_config(tmp_path, "range")).service_set("live")
    start = NOW - pd.Timedelta("1h")
    frame = collect_combined(
        config, EnvironmentSettings.from_environment(), start, NOW, "inference"
    )
    samples = frame[frame["severity_level"].isna()]
    events = frame[frame["severity_level"].notna()]
    expected_events = demo[(demo["timestamp"] >= start) & (demo["timestamp"] < NOW)]
    assert len(events) == len(expected_events)
    assert samples["message"].isna().all() and events["message"].notna().all()
    assert samples["trace_id"].isna().all() and events["trace_id"].notna().all()
    for service, rows in samples.groupby("service"):
        steps = rows["timestamp"].diff().dropna().unique()
        assert list(steps) == [pd.Timedelta("30s")], service
        assert rows["timestamp"].min() >= start and rows["timestamp"].max() <= NOW
        # a grid sample equals the latest stored value at or before it (Prometheus lookback)
        stored = demo[demo["service"] == service].set_index("timestamp")["cpu"]
        probe = rows.iloc[len(rows) // 2]
        assert probe["cpu"] == pytest.approx(stored[: probe["timestamp"]].iloc[-1], rel=1e-12)
    assert set(samples["service"]) == set(SERVICES)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "variant"), [("event", "event"), ("range", "grid:30s")])
def test_cli_trains_scores_and_replays_the_cache(
    mode: str,
    variant: str,
    backends: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(tmp_path, mode)
    args = ["--config", str(config), "--active-set", "live", "--now", NOW.isoformat()]
    run = [*args, "--no-tracking", "--run-once-inference", "--inference-variants", variant]
    _environment(monkeypatch, tmp_path, backends, download=True)
    assert main(run) == 0
    summary_path = (
        tmp_path / "output" / "live" / f"inference_summary_{variant.replace(':', '_')}.json"
    )
    summary = json.loads(summary_path.read_text())
    assert set(summary["service_scores"]) == set(SERVICES)
    assert summary["windows_scored"] > 50
    cached = sorted(p.name for p in (tmp_path / "cache" / "live").iterdir())
    assert cached == ["inference", "training"]

    # Backends unreachable: DOWNLOAD=false replays the cached download, same model → same scores.
    _environment(monkeypatch, tmp_path, backends, download=False)
    monkeypatch.setenv("SPLUNK_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    summary_path.unlink()
    assert main(run) == 0
    replayed = json.loads(summary_path.read_text())
    assert replayed["service_scores"] == summary["service_scores"]
    assert replayed["windows_scored"] == summary["windows_scored"]


def test_download_off_without_a_cache_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SPLUNK_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SPLUNK_TOKEN", TOKEN)
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOWNLOAD", "false")
    args = ["--config", str(_config(tmp_path, "event")), "--active-set", "live", "--no-tracking"]
    assert main([*args, "--run-once-training"]) == 2
    assert "DOWNLOAD=false but no cached training download of set 'live'" in caplog.text


def test_missing_backend_settings_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("SPLUNK_URL", "SPLUNK_TOKEN", "SPLUNK_USERNAME", "PROMETHEUS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "output"))
    args = ["--config", str(_config(tmp_path, "range")), "--active-set", "live", "--no-tracking"]
    assert main([*args, "--run-once-training"]) == 2
    assert "SPLUNK_URL" in caplog.text and "PROMETHEUS_URL" in caplog.text
