"""The demo source: realistic, deterministic telemetry whose injected incidents are really there.

Effects are measured against a counterfactual: the same seed with ``incident_every=None`` has the
same underlying signals without the incidents, so "did the named metric of the named service
change?" can be asked directly, in units of that service's normal spread.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.demo import (
    ALL_KINDS,
    DEMO_EDGES,
    DEMO_METRICS,
    DEMO_SERVICES,
    DemoData,
    Incident,
    generate_demo,
)
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP
from ml_monitoring_service.errors import ConfigError

START = pd.Timestamp("2024-05-06T00:00:00Z")
END = START + pd.Timedelta(hours=8)
SEED = 11
EVERY = pd.Timedelta("30min")
# Denser than the default so a few-minute window holds enough events for stable comparisons.
RATE = 20.0


@pytest.fixture(scope="module")
def noisy() -> DemoData:
    return generate_demo(START, END, seed=SEED, incident_every=EVERY, event_rate_per_min=RATE)


@pytest.fixture(scope="module")
def clean() -> DemoData:
    return generate_demo(START, END, seed=SEED, incident_every=None, event_rate_per_min=RATE)


def ancestors(service: str) -> set[str]:
    """Every service that (transitively) calls ``service`` in the demo graph."""
    found: set[str] = set()
    frontier = {service}
    while frontier:
        frontier = {caller for caller, callee in DEMO_EDGES if callee in frontier} - found
        found |= frontier
    return found


def window(data: DemoData, incident: Incident, service: str) -> pd.DataFrame:
    f = data.frame
    mask = (
        (f[TIMESTAMP] >= incident.start) & (f[TIMESTAMP] < incident.end) & (f[SERVICE] == service)
    )
    return f[mask]


def effect(
    noisy: DemoData, clean: DemoData, incident: Incident, service: str, metric: str
) -> float:
    """Mean |value - counterfactual window mean| in units of the service's clean spread."""
    observed = window(noisy, incident, service)[metric]
    baseline = window(clean, incident, service)[metric]
    spread = clean.frame.loc[clean.frame[SERVICE] == service, metric].std()
    return float((observed - baseline.mean()).abs().mean() / spread)


def shift(noisy: DemoData, clean: DemoData, incident: Incident, service: str, metric: str) -> float:
    """|window mean - counterfactual window mean| in units of the service's clean spread.

    Steadier than :func:`effect` for services with few events in a short window, where a single
    event with a rare error count would dominate a mean of absolute deviations.
    """
    observed = window(noisy, incident, service)[metric]
    baseline = window(clean, incident, service)[metric]
    spread = clean.frame.loc[clean.frame[SERVICE] == service, metric].std()
    return float(abs(observed.mean() - baseline.mean()) / spread)


def first(data: DemoData, kind: str) -> Incident:
    return next(i for i in data.incidents if i.kind == kind)


def test_frame_follows_the_canonical_contract(noisy: DemoData) -> None:
    f = noisy.frame
    assert list(f.columns) == [TIMESTAMP, SERVICE, *DEMO_METRICS, SEVERITY, MESSAGE]
    assert f[MESSAGE].notna().all()
    assert str(f[TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert set(f[SERVICE]) == set(DEMO_SERVICES)
    assert all(f[m].dtype == np.float64 for m in (*DEMO_METRICS, SEVERITY))
    assert f[TIMESTAMP].is_monotonic_increasing
    assert f[TIMESTAMP].min() >= START and f[TIMESTAMP].max() < END


def test_same_seed_gives_identical_data(noisy: DemoData) -> None:
    again = generate_demo(START, END, seed=SEED, incident_every=EVERY, event_rate_per_min=RATE)
    pd.testing.assert_frame_equal(again.frame, noisy.frame, check_exact=True)
    assert again.incidents == noisy.incidents


def test_different_seed_gives_different_data(noisy: DemoData) -> None:
    other = generate_demo(START, END, seed=SEED + 1, incident_every=EVERY, event_rate_per_min=RATE)
    assert len(other.frame) != len(noisy.frame) or not other.frame.equals(noisy.frame)
    assert [i.start for i in other.incidents] != [i.start for i in noisy.incidents]


def test_consecutive_periods_share_the_system_but_not_the_noise() -> None:
    first_hour = generate_demo(START, START + pd.Timedelta("1h"), seed=4, incident_every=None)
    next_hour = generate_demo(
        START + pd.Timedelta("1h"), START + pd.Timedelta("2h"), seed=4, incident_every=None
    )
    other_system = generate_demo(START, START + pd.Timedelta("1h"), seed=5, incident_every=None)

    def levels(data: DemoData) -> pd.Series:
        return data.frame.groupby(SERVICE)["memory"].median()

    # Memory wanders by a few percent around a per-service level drawn from 35-70%.
    assert (levels(first_hour) - levels(next_hour)).abs().max() < 8.0
    assert (levels(first_hour) - levels(other_system)).abs().max() > 8.0
    a = first_hour.frame.groupby(SERVICE)["request_rate"].head(20).to_numpy()
    b = next_hour.frame.groupby(SERVICE)["request_rate"].head(20).to_numpy()
    assert not np.allclose(a, b)


def test_clean_period_has_no_incidents(clean: DemoData) -> None:
    assert clean.incidents == ()
    assert set(clean.frame[SERVICE]) == set(DEMO_SERVICES)


def test_naive_range_is_taken_as_utc() -> None:
    end = START + pd.Timedelta("30min")
    naive = generate_demo(START.tz_localize(None), end.tz_localize(None), seed=1)
    aware = generate_demo(START, end, seed=1)
    pd.testing.assert_frame_equal(naive.frame, aware.frame)


def test_incidents_are_spaced_in_range_and_cycle_through_kinds(noisy: DemoData) -> None:
    incidents = noisy.incidents
    assert len(incidents) == round(0.8 * (END - START) / EVERY)
    assert [i.kind for i in incidents] == [ALL_KINDS[k % 6] for k in range(len(incidents))]
    margin = 0.1 * (END - START)
    assert incidents[0].start >= START + margin
    assert incidents[-1].end <= END - margin
    for earlier, later in itertools.pairwise(incidents):
        assert earlier.end < later.start  # ordered and never overlapping
    for incident in incidents:
        length = incident.end - incident.start
        assert pd.Timedelta("3min") <= length <= pd.Timedelta("25min")
        assert incident.start.tz is not None and str(incident.start.tz) == "UTC"
        assert incident.service in DEMO_SERVICES
        assert incident.affected_services[0] == incident.service
        assert len(set(incident.affected_services)) == len(incident.affected_services)
        assert set(incident.metrics) <= set(DEMO_METRICS)


def test_memory_leak_lasts_longer_than_the_others(noisy: DemoData) -> None:
    lengths = {i.kind: i.end - i.start for i in noisy.incidents}
    assert lengths["memory_leak"] >= pd.Timedelta("15min")
    assert max(v for k, v in lengths.items() if k != "memory_leak") <= pd.Timedelta("8min")


def test_no_incidents_when_the_range_is_too_short_for_one() -> None:
    short = generate_demo(START, START + pd.Timedelta("5min"), seed=3)
    assert short.incidents == ()


@pytest.mark.parametrize(
    "kind", ["spike", "level_shift", "noise", "memory_leak", "latency_cascade"]
)
def test_named_metrics_of_the_root_change_and_unaffected_services_do_not(
    noisy: DemoData, clean: DemoData, kind: str
) -> None:
    incident = first(noisy, kind)
    for metric in incident.metrics:
        assert effect(noisy, clean, incident, incident.service, metric) > 2.0, metric
    untouched = [s for s in DEMO_SERVICES if s not in incident.affected_services]
    for service in untouched:
        for metric in incident.metrics:
            assert shift(noisy, clean, incident, service, metric) < 1.0, (service, metric)


def test_memory_leak_ramps_up(noisy: DemoData, clean: DemoData) -> None:
    leak = first(noisy, "memory_leak")
    middle = leak.start + (leak.end - leak.start) / 2
    early = Incident(leak.kind, leak.service, leak.metrics, leak.start, middle, ())
    late = Incident(leak.kind, leak.service, leak.metrics, middle, leak.end, ())
    assert effect(noisy, clean, late, leak.service, "memory") > 1.5 * effect(
        noisy, clean, early, leak.service, "memory"
    )


def test_dropout_silences_the_root_and_its_callers_see_errors(
    noisy: DemoData, clean: DemoData
) -> None:
    dropout = first(noisy, "dropout")
    assert window(noisy, dropout, dropout.service).empty
    assert len(window(clean, dropout, dropout.service)) > 5  # it would have been talking
    callers = [caller for caller, callee in DEMO_EDGES if callee == dropout.service]
    assert callers, "dropout roots are chosen among services that have callers"
    for caller in callers:
        assert caller in dropout.affected_services
        assert effect(noisy, clean, dropout, caller, "error_count") > 2.0


def test_latency_cascade_propagates_to_every_caller_up_to_the_frontend(
    noisy: DemoData, clean: DemoData
) -> None:
    cascades = [i for i in noisy.incidents if i.kind == "latency_cascade"]
    assert cascades
    for cascade in cascades:
        root, *others = cascade.affected_services
        assert root == cascade.service != "frontend"
        assert set(others) == ancestors(root)
        assert "frontend" in others
        for service in cascade.affected_services:
            assert effect(noisy, clean, cascade, service, "latency") > 1.0, service
            baseline = window(clean, cascade, service)["latency"].mean()
            assert window(noisy, cascade, service)["latency"].mean() > baseline


def test_latency_builds_up_the_call_graph(clean: DemoData) -> None:
    mean_latency = clean.frame.groupby(SERVICE)["latency"].mean()
    for caller, callee in DEMO_EDGES:
        assert mean_latency[caller] > mean_latency[callee], (caller, callee)


def test_request_rate_follows_callers() -> None:
    # A whole day, so the daily cycle (not just minute-scale drift) drives the callers' traffic.
    day = generate_demo(START, START + pd.Timedelta("1D"), seed=SEED, incident_every=None)
    rates = (
        day.frame.set_index(TIMESTAMP)
        .groupby(SERVICE)["request_rate"]
        .resample("10min")
        .mean()
        .unstack(SERVICE)
    )
    for caller, callee in DEMO_EDGES:
        assert rates[caller].corr(rates[callee]) > 0.8, (caller, callee)


def test_cpu_tracks_load(clean: DemoData) -> None:
    for service, rows in clean.frame.groupby(SERVICE):
        assert rows["cpu"].corr(rows["request_rate"]) > 0.5, service


def test_events_arrive_irregularly_at_about_the_configured_rate(clean: DemoData) -> None:
    hours = (END - START) / pd.Timedelta("1h")
    for service, rows in clean.frame.groupby(SERVICE):
        gaps = rows[TIMESTAMP].diff().dropna().dt.total_seconds()
        assert (gaps >= 0).all()
        assert gaps.std() / gaps.mean() > 0.5, service  # Poisson-like, far from a fixed grid
        assert gaps.nunique() > 0.9 * len(gaps)
        assert 0.4 * RATE * 60 * hours < len(rows) < 2.0 * RATE * 60 * hours, service


def test_event_rate_parameter_scales_the_row_count() -> None:
    sparse = generate_demo(START, START + pd.Timedelta("1h"), seed=2, event_rate_per_min=2.0)
    dense = generate_demo(START, START + pd.Timedelta("1h"), seed=2, event_rate_per_min=8.0)
    assert 3.0 < len(dense.frame) / len(sparse.frame) < 5.0


def test_severity_is_mostly_info_and_rises_with_errors(clean: DemoData) -> None:
    f = clean.frame
    assert set(f[SEVERITY].unique()) <= {0.0, 1.0, 2.0}
    assert (f[SEVERITY] == 0).mean() > 0.8
    quiet = f.loc[f["error_count"] == 0, SEVERITY].mean()
    noisy_rows = f.loc[f["error_count"] >= 2, SEVERITY].mean()
    assert noisy_rows > quiet + 0.3


def test_custom_services_and_edges() -> None:
    data = generate_demo(
        START,
        START + pd.Timedelta("3h"),
        seed=5,
        services=("gateway", "orders", "db"),
        edges=(("gateway", "orders"), ("orders", "db")),
        incident_kinds=("latency_cascade",),
    )
    assert set(data.frame[SERVICE]) == {"gateway", "orders", "db"}
    assert {i.kind for i in data.incidents} == {"latency_cascade"}
    assert all(i.affected_services[-1] == "gateway" for i in data.incidents)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"incident_kinds": ("spike", "meteor")}, "meteor"),
        ({"incident_kinds": ()}, "non-empty"),
        ({"edges": (("frontend", "cart"), ("cart", "frontend"))}, "cycle"),
        ({"edges": (("frontend", "ledger"),)}, "ledger"),
        ({"edges": (("cart", "cart"),)}, "self-call"),
        ({"services": ("a", "a")}, "unique"),
        ({"incident_every": pd.Timedelta(0)}, "positive"),
        ({"event_rate_per_min": 0.0}, "positive"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_demo(START, END, **{"seed": 1, **kwargs})


def test_range_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="at least a minute"):
        generate_demo(END, START, seed=1)


def test_one_day_of_six_services_is_fast() -> None:
    began = time.perf_counter()
    day = generate_demo(START, START + pd.Timedelta("1D"), seed=7)
    elapsed = time.perf_counter() - began
    assert elapsed < 5.0
    assert len(day.frame) > 40_000
