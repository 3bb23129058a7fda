"""SMD-layout loading, tensor layouts, point scores, hit rates (the evaluation script:
``test_evaluate_public.py``)."""

from __future__ import annotations

from pathlib import Path

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
SHARED_SMD = REPO.parent / "shared" / "data" / "smd"


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


@pytest.mark.skipif(not SHARED_SMD.is_dir(), reason="../shared/data/smd is not present")
def test_real_smd_machine_loads() -> None:
    data = load_machine(SHARED_SMD, "machine-1-6")
    assert data.n_metrics == 38 and len(data.labels) == len(data.test)
    assert data.segments
    for segment in data.segments:
        assert data.labels[segment.start] == 1 and data.labels[segment.end] == 1
        assert all(0 <= d < 38 for d in segment.dims)
