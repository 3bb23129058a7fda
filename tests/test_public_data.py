"""SMD-layout loading, tensor layouts, point scores, hit rates; the evaluation script on SMD and
Nezha layouts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.public_data import (
    RootCauseSegment,
    list_machines,
    load_machine,
    machine_tensors,
    parse_interpretation,
    point_scores,
    root_cause_hit_rates,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "resources" / "smd_tiny"
TINY_NEZHA = REPO / "tests" / "resources" / "nezha_tiny"
SHARED_SMD = REPO.parent / "shared" / "data" / "smd"
SCRIPT = REPO / "scripts" / "evaluate_public.py"


def test_load_tiny_machine() -> None:
    assert list_machines(TINY) == ["tiny-1"]
    data = load_machine(TINY, "tiny-1")
    assert data.train.shape == (240, 3) and data.test.shape == (160, 3)
    assert int(data.labels.sum()) == 10
    # "80-90" is end-exclusive in SMD's convention: restricted to the labelled rows 80..89.
    assert data.segments == (RootCauseSegment(80, 89, (1,)),)


def test_interpretation_inclusive_end_is_kept() -> None:
    labels = np.zeros(20, dtype=np.int8)
    labels[5:9] = 1
    assert parse_interpretation("5-8:1,3\n", labels) == (RootCauseSegment(5, 8, (0, 2)),)


@pytest.mark.parametrize(
    ("mode", "services", "features"),
    [
        ("one-service", ("machine",), ("m1", "m2", "m3")),
        ("per-metric", ("m1", "m2", "m3"), ("value",)),
    ],
)
def test_tensor_layouts(mode: str, services: tuple[str, ...], features: tuple[str, ...]) -> None:
    data = load_machine(TINY, "tiny-1")
    train, test = machine_tensors(data, pd.Timedelta(minutes=5), mode)
    assert train.services == services and train.features == features
    assert test.values.reshape(160, -1) == pytest.approx(data.test)
    assert test.timestamps[0] == train.timestamps[-1] + pd.Timedelta(minutes=5)
    assert str(test.timestamps.tz) == "UTC"


def test_point_scores_assign_window_ends() -> None:
    timestamps = pd.date_range("2024-01-01", periods=6, freq="1min", tz="UTC")
    ends = timestamps[2:]
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    assert point_scores(ends, scores, timestamps).tolist() == [1, 1, 1, 2, 3, 4]
    per_metric = np.arange(8, dtype=float).reshape(4, 2)
    filled = point_scores(ends, per_metric, timestamps)
    assert filled.shape == (6, 2) and filled[0].tolist() == [0, 1] and filled[5].tolist() == [6, 7]


def test_root_cause_hit_rates_hand_computed() -> None:
    scores = np.zeros((10, 4))
    scores[2:5] = [0.9, 0.1, 0.8, 0.5]
    segments = (RootCauseSegment(2, 4, (0, 3)), RootCauseSegment(2, 4, (1,)))
    # Segment 1: top-2 = {0, 2} → 1/2; top-3 = {0, 2, 3} → 1. Segment 2: top-1 = {0} → 0,
    # top-1 (⌊1.5⌋) → 0.
    assert root_cause_hit_rates(scores, segments) == {"hitrate@100": 0.25, "hitrate@150": 0.5}
    assert root_cause_hit_rates(scores, ()) == {"hitrate@100": None, "hitrate@150": None}


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evaluate_public", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["one-service", "per-metric"])
def test_script_on_tiny_dataset(tmp_path: Path, mode: str) -> None:
    out = tmp_path / "results.json"
    _load_script().run(
        [
            "--dataset", str(TINY), "--interval", "5min", "--mode", mode,
            "--detectors", "robust_zscore,pca,random", "--window-size", "16", "--out", str(out),
        ]
    )  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["code"]["commit"]
    zscore = payload["per_machine"]["tiny-1"]["detectors"]["robust_zscore"]
    # A +1.0 shift on m2 over 10 steps: the z-score finds it and blames m2.
    assert zscore["roc_auc"] > 0.9
    assert zscore["hitrate@100"] == 1.0
    assert payload["mean"]["random"]["roc_auc"] < 0.8
    for key in ("auc_pr", "vus_pr", "f1_at_threshold", "best_f1", "pa_best_f1_legacy"):
        assert 0.0 <= zscore[key] <= 1.0


def test_script_on_tiny_nezha_recording(tmp_path: Path) -> None:
    out = tmp_path / "nezha.json"
    _load_script().run(
        [
            "--dataset", str(TINY_NEZHA), "--detectors", "robust_zscore,random,transformer",
            "--max-epochs", "2", "--out", str(out),
        ]
    )  # fmt: skip
    payload = json.loads(out.read_text())
    # The Train-Ticket-style day is too short to train on: reported, not silently dropped.
    assert list(payload["per_day"]) == ["2024-05-01"]
    assert "2024-05-02" in payload["skipped_days"]
    day = payload["per_day"]["2024-05-01"]
    assert day["services"] == ["cartservice", "checkoutservice", "frontend"]
    assert ["frontend", "cartservice"] in day["call_graph"]
    assert day["training_range"][0].startswith("2024-05-01 00:55:30")
    faults = day["faults"]
    assert [(f["service"], f["kind"]) for f in faults] == [
        ("frontend", "cpu_contention"),
        ("cartservice", "network_delay"),
    ]
    # Both faults are obvious: the z-score detector alerts within the first minute and blames
    # the injected service, and so does the z-score root-cause ranking.
    for f in faults:
        assert f["robust_zscore"]["detected"] is True
        assert f["robust_zscore"]["delay_minutes"] < 1.0
        assert f["robust_zscore"]["rank"] == 1
        assert f["zscore_rca"]["rank"] == 1
        assert f["transformer"]["detected"] is not None
    zscore = payload["overall"]["robust_zscore"]
    assert zscore["detection_rate"] == 1.0 and zscore["ac@1"] == 1.0
    assert payload["overall"]["zscore_rca"]["ac@1"] == 1.0
    assert payload["config"]["window_size"] == 8 and "memory" not in payload["config"]["metrics"]


@pytest.mark.skipif(not SHARED_SMD.is_dir(), reason="../shared/data/smd is not present")
def test_real_smd_machine_loads() -> None:
    data = load_machine(SHARED_SMD, "machine-1-6")
    assert data.n_metrics == 38 and len(data.labels) == len(data.test)
    assert data.segments
    for segment in data.segments:
        assert data.labels[segment.start] == 1 and data.labels[segment.end] == 1
        assert all(0 <= d < 38 for d in segment.dims)
