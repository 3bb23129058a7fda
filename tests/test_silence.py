"""Silence detection on synthetic log-event streams with a known outage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.schema import SERVICE, SEVERITY, TIMESTAMP
from ml_monitoring_service.explain.silence import silences

START = pd.Timestamp("2024-06-01T00:00:00Z")
PERIOD = (START + pd.Timedelta("2h"), START + pd.Timedelta("2h30min"))
SERVICES = ("frontend", "checkout", "payment", "shipping")


def events(
    seed: int,
    per_minute: float = 6.0,
    gaps: dict[str, tuple[pd.Timestamp, pd.Timestamp]] | None = None,
) -> pd.DataFrame:
    """Poisson log events for every service over 2 h 30 min; no events inside ``gaps``."""
    rng = np.random.default_rng(seed)
    rows = []
    length_s = (PERIOD[1] - START).total_seconds()
    for service in SERVICES:
        offsets = np.sort(rng.uniform(0, length_s, rng.poisson(per_minute / 60 * length_s)))
        times = START + pd.to_timedelta(offsets, unit="s")
        if gaps and service in gaps:
            lo, hi = gaps[service]
            times = times[(times < lo) | (times >= hi)]
        rows.append(pd.DataFrame({TIMESTAMP: times, SERVICE: service, SEVERITY: 0.0}))
    metric_samples = pd.DataFrame(  # metric rows carry no severity and are not log events
        {TIMESTAMP: pd.date_range(START, PERIOD[1], freq="30s"), SERVICE: "payment"}
    ).assign(**{SEVERITY: np.nan})
    return pd.concat([*rows, metric_samples]).sort_values(TIMESTAMP, ignore_index=True)


def test_a_four_minute_outage_is_found_with_its_bounds() -> None:
    outage = (PERIOD[0] + pd.Timedelta("10min"), PERIOD[0] + pd.Timedelta("14min"))
    found = silences(events(1, gaps={"payment": outage}), *PERIOD, SERVICES)
    assert set(found) == {"payment"}
    silence = found["payment"]
    assert outage[0] - pd.Timedelta("1min") < silence.gap_start <= outage[0]
    assert outage[1] <= silence.gap_end < outage[1] + pd.Timedelta("1min")
    assert 20 < silence.expected_events < 40  # ≈ 6 per minute over 4-5 minutes
    assert silence.surprise >= 10
    assert "no log events for 4." in silence.describe


@pytest.mark.parametrize("seed", range(20))
def test_ordinary_poisson_gaps_are_not_silence(seed: int) -> None:
    assert silences(events(seed), *PERIOD, SERVICES) == {}


def test_everyone_silent_at_once_is_a_pipeline_gap_not_an_outage() -> None:
    outage = (PERIOD[0] + pd.Timedelta("5min"), PERIOD[0] + pd.Timedelta("15min"))
    gaps = {service: outage for service in SERVICES[:3]}
    assert silences(events(2, gaps=gaps), *PERIOD, SERVICES) == {}


def test_a_service_without_a_known_rate_is_not_judged() -> None:
    frame = events(3, per_minute=0.05)  # ≈ 6 events before the period: too few to know its rate
    assert silences(frame, *PERIOD, SERVICES) == {}


def test_a_period_at_the_start_of_the_data_has_no_baseline() -> None:
    frame = events(4, gaps={"payment": (START, START + pd.Timedelta("10min"))})
    assert silences(frame, START, START + pd.Timedelta("30min"), SERVICES) == {}


def test_the_baseline_can_be_restricted() -> None:
    outage = (PERIOD[0] + pd.Timedelta("10min"), PERIOD[0] + pd.Timedelta("14min"))
    frame = events(5, gaps={"payment": outage})
    since = PERIOD[0] - pd.Timedelta("30min")
    assert set(silences(frame, *PERIOD, SERVICES, baseline_start=since)) == {"payment"}
    too_late = PERIOD[0] - pd.Timedelta("30s")  # too few events left to know the rate
    assert silences(frame, *PERIOD, SERVICES, baseline_start=too_late) == {}
