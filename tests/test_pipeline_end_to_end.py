"""The whole pipeline through the CLI on the embedded demo: train, store, score, write, track."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY_DEMO_SET
from ml_monitoring_service.cli import main
from ml_monitoring_service.config import DEFAULT_CONFIG_PATH, load_config
from ml_monitoring_service.detectors import WindowDetector
from ml_monitoring_service.pipeline.model_store import current_version, model_root

SMALL_DEMO = (
    TINY_DEMO_SET
    + """    model: {max_epochs: 2, patience: 2, windows_per_epoch: 128, d_model: 16, n_heads: 2}
    schedule: {training_lookback: 3h, inference_lookback: 1h}
"""
)
SUMMARY_KEYS = {
    "schema_version",
    "set",
    "variant",
    "model_version",
    "time_range",
    "threshold",
    "windows_scored",
    "anomalies",
    "anomaly_rate",
    "max_score",
    "service_scores",
    "metric_scores",
    "anomalous_periods",
    "call_graph",
}
PERIOD_KEYS = {
    "start",
    "end",
    "peak_time",
    "peak_score",
    "top_service",
    "top_metric",
    "windows",
    "root_cause_candidates",
    "incident_report",
}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    config = tmp_path / "sets.yaml"
    config.write_text(SMALL_DEMO)
    output = tmp_path / "output"
    monkeypatch.setenv("OUTPUT_DIR", str(output))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    return config, output


def run_cli(config: Path, *flags: str) -> int:
    return main(
        ["--config", str(config), "--active-set", "tiny", "--now", "2024-03-04T12:00:00", *flags]
    )


@pytest.mark.slow
def test_inference_trains_when_needed_then_reuses_the_model(
    workspace: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config, output = workspace
    caplog.set_level(logging.INFO, logger="ml_monitoring_service")
    assert run_cli(config, "--run-once-inference", "--inference-variants", "event,grid:30s") == 0
    trained_on = "cuda" if torch.cuda.is_available() else "cpu"  # device: auto
    assert caplog.text.count(f" s on {trained_on}") == 2  # one model per variant says where
    for variant in ("event", "grid_30s"):
        summary = json.loads((output / "tiny" / f"inference_summary_{variant}.json").read_text())
        assert set(summary) == SUMMARY_KEYS
        assert summary["windows_scored"] > 0
        assert summary["anomaly_rate"] == pytest.approx(
            summary["anomalies"] / summary["windows_scored"]
        )
        assert set(summary["service_scores"]) == {"frontend", "cart", "checkout", "payment"}
        assert set(summary["metric_scores"]["cart"]) == {
            "cpu",
            "memory",
            "latency",
            "request_rate",
            "error_count",
            "severity_level",
            "event_count",
            "seconds_since_event",
        }
        assert summary["anomalous_periods"], "the demo's incidents make at least one period"
        for period in summary["anomalous_periods"]:
            assert set(period) == PERIOD_KEYS
            assert period["start"] <= period["end"]
            candidates = period["root_cause_candidates"]
            assert 1 <= len(candidates) <= 3
            assert candidates[0]["service"] == period["top_service"]
            confidences = [c["confidence"] for c in candidates]
            assert confidences == sorted(confidences, reverse=True) and sum(confidences) <= 1
            assert (output / "tiny" / period["incident_report"]).is_file()
        assert (
            output / "tiny" / f"microservice_graph_with_results_{variant}.png"
        ).stat().st_size > 1000
        assert (output / "tiny" / f"score_timeline_{variant}.png").stat().st_size > 1000
    first = current_version(model_root(output, "tiny", "event"))
    assert first is not None
    detector = WindowDetector.load(first)
    assert detector.services_ == ("frontend", "cart", "checkout", "payment")

    assert run_cli(config, "--run-once-inference", "--inference-variants", "event") == 0
    assert current_version(model_root(output, "tiny", "event")) == first  # reused, not retrained

    assert run_cli(config, "--run-once-training", "--inference-variants", "event") == 0
    second = current_version(model_root(output, "tiny", "event"))
    assert second is not None and second != first and first.is_dir()


@pytest.mark.slow
def test_runs_are_tracked_in_mlflow(workspace: tuple[Path, Path], tmp_path: Path) -> None:
    import mlflow

    config, _ = workspace
    assert run_cli(config, "--run-once-inference", "--inference-variants", "grid:30s") == 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ml-monitoring/tiny"])
    names = set(runs["tags.mlflow.runName"])
    assert names == {"train grid:30s", "inference grid:30s"}
    training = runs[runs["tags.mlflow.runName"] == "train grid:30s"].iloc[0]
    assert training["metrics.threshold"] > 0
    assert training["params.window_size"] == "16"


def test_configuration_errors_exit_2_with_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL_DEMO.replace("source: demo", "source: kafka"))
    assert run_cli(bad, "--run-once-inference") == 2
    assert "source" in caplog.text and str(bad) in caplog.text
    assert run_cli(bad.with_name("missing.yaml"), "--run-once-inference") == 2
    good = tmp_path / "good.yaml"
    good.write_text(SMALL_DEMO)
    assert run_cli(good, "--run-once-inference", "--inference-variants", "grid:soon") == 2
    assert "not a frequency" in caplog.text


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference-recording"


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE.is_dir(), reason="../shared/data/reference-recording not present")
def test_reference_recording_runs_through_the_file_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped `reference` set: a real 3-service recording, replayed from disk."""
    reference = load_config(DEFAULT_CONFIG_PATH).service_set("reference")
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw["service_sets"] = {"reference": raw["service_sets"]["reference"]}
    config = tmp_path / "reference.yaml"
    config.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("OUTPUT_DIR", str(tmp_path / "output"))
    args = ["--config", str(config), "--active-set", "reference", "--no-tracking"]
    assert main([*args, "--run-once-inference", "--inference-variants", "grid:1s"]) == 0
    summary_path = tmp_path / "output" / "reference" / "inference_summary_grid_1s.json"
    summary = json.loads(summary_path.read_text())
    assert set(summary["service_scores"]) == set(reference.services)
    assert summary["windows_scored"] > 1000
    # inference overlaps training in this recording: most of it must look normal
    assert summary["anomaly_rate"] < 0.1
