"""Silence: a service that stops logging is the most direct sign that it is down.

A crashed or hung service leaves little trace in its own metrics (a gauge that is no longer
scraped is forward-filled, so it looks flat and normal) while its callers light up with errors.
What it cannot hide is the missing stream of log events. For each service this finds the longest
stretch of a period without a log event and asks how surprising it is at the service's own rate
before the period: with rate λ, a gap of ``g`` seconds has probability ``exp(-λ·g)``; the period
holds about ``1 + λ·T`` gaps, so the surprise (in nats) is ``λ·g − ln(1 + λ·T)``. A service is
*silent* when that exceeds ``SURPRISE_MIN`` (10 nats: a chance of about 1 in 22,000), which a
three-minute outage of a service logging a few lines a minute clears and ordinary Poisson gaps do
not. Services with fewer than ``MIN_BASELINE_EVENTS`` events before the period are never judged:
their rate is unknown. When most of the judged services fall silent together, the log pipeline
(shipping, the collector, the recording) has a gap, not the services: then nobody is silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.data.schema import SERVICE, SEVERITY, TIMESTAMP

SURPRISE_MIN = 10.0
MIN_BASELINE_EVENTS = 10


@dataclass(frozen=True)
class Silence:
    """The longest log-free stretch of a silent service inside a period."""

    gap_start: pd.Timestamp
    gap_end: pd.Timestamp
    expected_events: float  # events the baseline rate predicts for the gap
    surprise: float  # nats; at least SURPRISE_MIN

    @property
    def describe(self) -> str:
        """One line for evidence: how long, and how many events were expected instead."""
        minutes = (self.gap_end - self.gap_start) / pd.Timedelta(minutes=1)
        return (
            f"no log events for {minutes:.1f} min from {self.gap_start} "
            f"(≈{self.expected_events:.0f} expected at its usual rate)"
        )


def silences(
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    services: Sequence[str],
    baseline_start: pd.Timestamp | None = None,
) -> dict[str, Silence]:
    """The silent services among ``services`` in ``[start, end]``, keyed by name (none when more
    than half of the judged services, and more than one, are silent at once).

    Log events are the rows with a severity (metric samples have none). The baseline rate comes
    from the events before ``start`` (from ``baseline_start`` on, if given, else from the
    frame's first row).
    """
    events = frame.loc[frame[SEVERITY].notna(), [TIMESTAMP, SERVICE]]
    first = frame[TIMESTAMP].min() if baseline_start is None else baseline_start
    if pd.isna(first) or first >= start:
        return {}
    events = events[(events[TIMESTAMP] >= first) & (events[TIMESTAMP] <= end)]
    by_service = dict(tuple(events.groupby(SERVICE, sort=False)[TIMESTAMP]))
    judged = {
        service: _silence(by_service[service], first, start, end)
        for service in services
        if service in by_service and (by_service[service] < start).sum() >= MIN_BASELINE_EVENTS
    }
    found = {service: s for service, s in judged.items() if s is not None}
    if len(found) > max(1, len(judged) // 2):
        return {}  # a gap in the log pipeline, not in the services
    return found


def _silence(
    times: pd.Series, first: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp
) -> Silence | None:
    """The period's longest gap if it is surprising at the baseline rate, else None."""
    baseline_events = int((times < start).sum())
    rate = baseline_events / max((start - first).total_seconds(), 1.0)  # events per second
    inside = np.sort(times[times >= start].to_numpy(dtype="datetime64[ns]"))
    bounds = np.concatenate([[_naive_utc(start)], inside, [_naive_utc(end)]])
    gaps = np.diff(bounds).astype("timedelta64[ns]").astype(np.int64) / 1e9
    longest = int(np.argmax(gaps))
    period_s = max((end - start).total_seconds(), 0.0)
    surprise = rate * float(gaps[longest]) - float(np.log1p(rate * period_s))
    if surprise < SURPRISE_MIN:
        return None
    return Silence(
        gap_start=pd.Timestamp(bounds[longest], tz="UTC"),
        gap_end=pd.Timestamp(bounds[longest + 1], tz="UTC"),
        expected_events=rate * float(gaps[longest]),
        surprise=surprise,
    )


def _naive_utc(stamp: pd.Timestamp) -> np.datetime64:
    """``stamp`` as a UTC ``datetime64[ns]`` (naive stamps are UTC, as everywhere inside)."""
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_datetime64().astype("datetime64[ns]")
