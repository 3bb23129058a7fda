"""Model lifecycle rules: promotion verdicts, excluded windows, version pruning, rejected dir."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.config import LifecycleConfig, load_config
from ml_monitoring_service.daemon.demo_stream import DemoStream
from ml_monitoring_service.daemon.lifecycle import drop_excluded, judge
from ml_monitoring_service.daemon.scheduler import Daemon
from ml_monitoring_service.data.demo import generate_demo
from ml_monitoring_service.pipeline.model_store import current_version, model_root, versions
from ml_monitoring_service.pipeline.training import Candidate, count_horizon
from ml_monitoring_service.tracking import RunTracker
from test_daemon import BASE, daemon_env, sample, tiny_sets

POLICY = LifecycleConfig(max_training_anomaly_rate=0.05, validation_tolerance=0.25)


def fake_model(error: float, anomalous: list[bool] | None = None) -> Any:
    """A detector stand-in: fixed mean error, and the given per-window verdicts when scoring."""
    verdicts = np.array(anomalous if anomalous is not None else [False] * 100)
    return SimpleNamespace(
        mean_error=lambda tensor: error,
        score=lambda tensor: SimpleNamespace(is_anomalous=verdicts),
    )


def candidate(error: float) -> Candidate:
    return cast(Candidate, SimpleNamespace(detector=fake_model(error), train=None, val=None))


def test_first_model_is_always_promoted() -> None:
    verdict = judge(candidate(5.0), None, POLICY)
    assert verdict.promote and verdict.reason == "first_model"


def test_contaminated_training_data_is_rejected() -> None:
    current = fake_model(1.0, [True] * 10 + [False] * 90)  # 10 % > 5 %
    verdict = judge(candidate(0.5), current, POLICY)
    assert not verdict.promote and verdict.reason == "contaminated"
    assert "10.0%" in verdict.detail


@pytest.mark.parametrize(("error", "promote"), [(1.2, True), (1.3, False), (0.8, True)])
def test_validation_error_is_compared_with_tolerance(error: float, promote: bool) -> None:
    verdict = judge(candidate(error), fake_model(1.0), POLICY)
    assert verdict.promote is promote
    assert verdict.reason == ("better_or_equal" if promote else "worse_validation")


def test_a_retrained_candidate_keeps_the_current_count_horizon() -> None:
    """Under ``auto`` the horizon is fitted once: refitting it on new training data (an outage
    halves the event rate) would change the layout and let the candidate skip the gate."""
    config = load_config().service_set("demo")
    frame = generate_demo(BASE - pd.Timedelta("2h"), BASE, seed=1, incident_every=None).frame
    fitted = count_horizon(config, frame)
    assert pd.Timedelta("1s") <= fitted <= pd.Timedelta("4min")
    assert count_horizon(config, frame, current=pd.Timedelta("150s")) == pd.Timedelta("150s")
    fixed = config.model_copy(
        update={
            "preprocessing": config.preprocessing.model_copy(
                update={"count_horizon": pd.Timedelta("1min")}
            )
        }
    )
    assert count_horizon(fixed, frame, current=pd.Timedelta("150s")) == pd.Timedelta("1min")


def test_declared_windows_are_dropped_from_training_rows() -> None:
    times = pd.date_range("2024-01-01", periods=10, freq="1min", tz="UTC")
    frame = pd.DataFrame({"timestamp": times, "value": range(10)})
    window = (times[2], times[5])
    kept = drop_excluded(frame, (window,))
    assert list(kept["value"]) == [0, 1, 5, 6, 7, 8, 9]
    assert drop_excluded(frame, ()) is frame


def test_rejected_candidates_stay_out_of_current_and_versions_are_pruned(tmp_path: Path) -> None:
    sets = tiny_sets(tmp_path, "tiny")
    daemon = Daemon(sets, daemon_env(tmp_path), serve_http=False)
    runner = daemon.runners["tiny"]
    root = model_root(tmp_path / "output", "tiny", "grid_30s")
    for i in range(3):
        runner.train(BASE + pd.Timedelta(minutes=10 * i))
    assert len(versions(root)) == 2  # keep_versions: 2
    promoted = current_version(root)
    assert promoted == versions(root)[-1]

    strict = tiny_sets(tmp_path, "tiny")[0].model_copy(
        update={"lifecycle": LifecycleConfig(max_training_anomaly_rate=0.0, keep_versions=2)}
    )
    runner.config = strict
    runner.train(BASE + pd.Timedelta(minutes=40))  # tiny model: > 0 % anomalous, refused
    assert current_version(root) == promoted
    rejected = versions(root / "rejected")
    assert len(rejected) == 1 and "anomalous" in (rejected[0] / "reason.json").read_text()
    text = daemon.metrics.exposition().decode()
    assert sample(text, "ml_monitoring_promotion_rejections_total", reason="contaminated") == 1


@pytest.mark.slow
def test_promoted_models_are_tracked_and_registered_in_mlflow(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    tracker = RunTracker(uri)
    daemon = Daemon(
        tiny_sets(tmp_path, "tiny"), daemon_env(tmp_path), tracker=tracker, serve_http=False
    )
    daemon.runners["tiny"].train(BASE)
    client = MlflowClient(tracking_uri=uri)
    found = client.search_model_versions("name = 'ml-monitoring-tiny-grid_30s'")
    root = model_root(tmp_path / "output", "tiny", "grid_30s")
    current = current_version(root)
    assert current is not None and len(found) == 1
    assert found[0].tags["model_version"] == current.name
    assert found[0].source == current.resolve().as_uri()


def test_demo_stream_replays_the_same_past_and_incidents_reach_the_newest_minutes(
    tmp_path: Path,
) -> None:
    config = tiny_sets(tmp_path, "tiny")[0]
    stream = DemoStream(config)
    now = pd.Timestamp("2024-03-04T02:00:00Z")
    first = stream.inference_data(now).frame
    later = stream.inference_data(now + pd.Timedelta("5min")).frame
    overlap = first[first["timestamp"] >= later["timestamp"].min()].reset_index(drop=True)
    assert overlap.equals(later[later["timestamp"] < now].reset_index(drop=True))
    day = stream.window(now.floor("D"), now.floor("D") + pd.Timedelta("1D"))
    assert day.incidents, "the demo injects incidents while the daemon runs"
    assert day.frame["message"].notna().all()  # cached blocks keep the log text
    incident = day.incidents[len(day.incidents) // 2]
    tick = stream.window(
        incident.start - pd.Timedelta("30min"), incident.start + pd.Timedelta("1min")
    )
    assert incident in tick.incidents
