"""Injected anomalies are real, placed where they say, and reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.demo import DEMO_EDGES, DEMO_METRICS, DEMO_SERVICES, generate_demo
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.injection import DROPOUT_METRIC, inject, robust_spread


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    start = pd.Timestamp("2024-06-05T10:00:00Z")
    return generate_demo(start, start + pd.Timedelta("2h"), seed=3, incident_every=None).frame


def _rows(frame: pd.DataFrame, service: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return (
        (frame["service"] == service) & (frame["timestamp"] >= start) & (frame["timestamp"] < end)
    )


def _assert_unchanged_outside(out: pd.DataFrame, clean: pd.DataFrame, changed: np.ndarray) -> None:
    """Nothing outside the injected rows (other services, other times) moved."""
    metrics = list(DEMO_METRICS)
    pd.testing.assert_frame_equal(
        out.loc[~changed, metrics].reset_index(drop=True),
        clean.loc[~changed, metrics].reset_index(drop=True),
    )


def test_robust_spread_falls_back_for_flat_series() -> None:
    rng = np.random.default_rng(0)
    assert robust_spread(rng.normal(5.0, 2.0, 20_000)) == pytest.approx(2.0, rel=0.05)
    assert robust_spread(np.array([90.0] * 10)) == pytest.approx(9.0)  # 0.1 * |median|
    assert robust_spread(np.array([0.0] * 10)) == pytest.approx(1.0)
    # IQR 0 but not constant: standard deviation
    assert robust_spread(np.array([1.0] * 9 + [11.0])) == pytest.approx(3.0)


def test_level_shift_raises_only_that_service_and_metric(clean: pd.DataFrame) -> None:
    out, injections = inject(
        clean, DEMO_SERVICES, DEMO_METRICS, kinds=["level_shift"], count=3, seed=5
    )
    assert len(out) == len(clean)
    changed = np.zeros(len(clean), dtype=bool)
    for inj in injections:
        rows = _rows(clean, inj.service, inj.start, inj.end).to_numpy()
        assert rows.sum() >= 3
        spread = robust_spread(clean.loc[clean["service"] == inj.service, inj.metric])
        delta = out.loc[rows, inj.metric].median() - clean.loc[rows, inj.metric].median()
        assert delta == pytest.approx(inj.magnitude * spread, rel=1e-9)
        assert inj.magnitude * spread > 0
        changed |= rows
    _assert_unchanged_outside(out, clean, changed)


def test_spike_and_noise_are_sized_in_spreads(clean: pd.DataFrame) -> None:
    out, injections = inject(
        clean, DEMO_SERVICES, DEMO_METRICS, kinds=["spike", "noise"], count=4, seed=2
    )
    for inj in injections:
        rows = _rows(clean, inj.service, inj.start, inj.end).to_numpy()
        spread = robust_spread(clean.loc[clean["service"] == inj.service, inj.metric])
        diff = out.loc[rows, inj.metric].to_numpy() - clean.loc[rows, inj.metric].to_numpy()
        if inj.kind == "spike":
            assert inj.end - inj.start <= pd.Timedelta("3min")  # a short burst
            np.testing.assert_allclose(diff, inj.magnitude * spread)
        else:
            assert np.std(diff) == pytest.approx(inj.magnitude * spread, rel=0.6)
            assert np.mean(np.abs(diff)) > spread


def test_drift_ramps_from_nothing_to_its_magnitude(clean: pd.DataFrame) -> None:
    out, injections = inject(clean, DEMO_SERVICES, DEMO_METRICS, kinds=["drift"], count=2, seed=4)
    for inj in injections:
        rows = _rows(clean, inj.service, inj.start, inj.end).to_numpy()
        spread = robust_spread(clean.loc[clean["service"] == inj.service, inj.metric])
        diff = out.loc[rows, inj.metric].to_numpy() - clean.loc[rows, inj.metric].to_numpy()
        elapsed = (clean.loc[rows, "timestamp"] - inj.start) / (inj.end - inj.start)
        np.testing.assert_allclose(diff, inj.magnitude * spread * elapsed.to_numpy())
        assert np.all(np.diff(diff) >= 0) and diff[-1] > 0.9 * inj.magnitude * spread


def test_a_cascade_starts_at_its_origin_and_echoes_up_the_call_graph(clean: pd.DataFrame) -> None:
    out, injections = inject(
        clean, DEMO_SERVICES, DEMO_METRICS, kinds=["cascade"], count=3, seed=6, edges=DEMO_EDGES
    )
    callers_of = {
        "cart": ("frontend",),
        "catalog": ("frontend",),
        "checkout": ("frontend",),
        "payment": ("checkout", "frontend"),
        "shipping": ("checkout", "frontend"),
    }
    assert any(len(inj.callers) == 2 for inj in injections)  # an echo two hops up, too
    changed = np.zeros(len(clean), dtype=bool)
    for inj in injections:
        assert inj.callers == callers_of[inj.service]  # only services someone calls; nearest first
        span = inj.end - inj.start
        for hops, service in enumerate((inj.service, *inj.callers)):
            since = inj.start + span * (0.25 * hops)
            rows = _rows(clean, service, since, inj.end).to_numpy()
            spread = robust_spread(clean.loc[clean["service"] == service, inj.metric])
            diff = out.loc[rows, inj.metric].to_numpy() - clean.loc[rows, inj.metric].to_numpy()
            np.testing.assert_allclose(diff, inj.magnitude * 0.5**hops * spread)
            early = _rows(clean, service, inj.start, since).to_numpy()
            assert np.array_equal(out.loc[early, inj.metric], clean.loc[early, inj.metric])
            changed |= rows
    _assert_unchanged_outside(out, clean, changed)


def test_a_cascade_needs_a_call_graph(clean: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="cascade injections need a call graph"):
        inject(clean, DEMO_SERVICES, DEMO_METRICS, kinds=["cascade"], count=2)
    with pytest.raises(ConfigError, match="cascade injections need a call graph"):
        inject(clean, DEMO_SERVICES, DEMO_METRICS, kinds=["cascade"], edges=[("gateway", "auth")])


def test_dropout_removes_exactly_that_services_rows(clean: pd.DataFrame) -> None:
    out, injections = inject(clean, DEMO_SERVICES, DEMO_METRICS, kinds=["dropout"], count=2, seed=1)
    removed = np.zeros(len(clean), dtype=bool)
    for inj in injections:
        assert inj.metric == DROPOUT_METRIC
        rows = _rows(clean, inj.service, inj.start, inj.end).to_numpy()
        assert rows.sum() > 0
        assert not _rows(out, inj.service, inj.start, inj.end).any()
        removed |= rows
    pd.testing.assert_frame_equal(out, clean.loc[~removed].reset_index(drop=True))


def test_spans_are_disjoint_inside_the_stretch_and_seeded(clean: pd.DataFrame) -> None:
    out, injections = inject(clean, DEMO_SERVICES, DEMO_METRICS, count=8, seed=11)
    assert sorted(i.kind for i in injections) == sorted(
        ["spike", "dropout", "level_shift", "noise"] * 2
    )
    spans = sorted((i.start, i.end) for i in injections)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    assert spans[0][0] > clean["timestamp"].iloc[0]
    assert spans[-1][1] < clean["timestamp"].iloc[-1]
    again, same = inject(clean, DEMO_SERVICES, DEMO_METRICS, count=8, seed=11)
    pd.testing.assert_frame_equal(out, again)
    assert same == injections
    _, other = inject(clean, DEMO_SERVICES, DEMO_METRICS, count=8, seed=12)
    assert other != injections


def test_constant_metrics_are_avoided() -> None:
    times = pd.date_range("2024-01-01", periods=600, freq="1s", tz="UTC")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "timestamp": times,
            "service": "a",
            "flat": 5.0,
            "moving": rng.normal(0, 1, len(times)),
            "severity_level": 0.0,
        }
    )
    _, injections = inject(
        frame, ["a"], ["flat", "moving"], kinds=["level_shift", "noise"], count=6, seed=0
    )
    assert {i.metric for i in injections} == {"moving"}


def test_bad_arguments_are_rejected(clean: pd.DataFrame) -> None:
    with pytest.raises(ConfigError):
        inject(clean, DEMO_SERVICES, DEMO_METRICS, kinds=["memory_leak"])
    with pytest.raises(ConfigError):
        inject(clean, DEMO_SERVICES, DEMO_METRICS, count=0)
