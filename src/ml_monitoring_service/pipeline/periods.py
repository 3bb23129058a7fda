"""Group anomalous windows into periods an operator can act on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.explain.log_evidence import LogEvidence, log_evidence
from ml_monitoring_service.metric_roles import NO_ROLES, MetricRoles
from ml_monitoring_service.rootcause import Candidate, rank_period

CANDIDATES_REPORTED = 3
# Two runs of anomalous windows are one period when the second run's first window ends within this
# fraction of a window's duration after the first run's last one.
MERGE_GAP = 0.25
# A period is split where another service takes over as the top-scoring one and stays on top for
# windows whose ends span at least this fraction of a window's duration.
TAKEOVER = 0.5
# A period is reported only when its anomalous windows' ends span at least this fraction of a
# window's duration: an anomaly stays inside every window that covers it, so a real one keeps
# windows anomalous for about a window, while a threshold flicker lasts a few windows.
PERSISTENCE = 0.125


@dataclass(frozen=True)
class AnomalousPeriod:
    """A maximal run of consecutive anomalous windows, blamed on its most likely root cause.

    ``candidates`` are the top root-cause candidates (:mod:`ml_monitoring_service.rootcause`);
    ``top_service`` / ``top_metric`` are the first one's. ``logs`` is the period's log evidence
    when the scored data was given with its log events.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    peak_time: pd.Timestamp
    peak_score: float
    top_service: str
    top_metric: str
    windows: int  # windows in the span, including short normal gaps that were merged
    candidates: tuple[Candidate, ...] = ()
    logs: LogEvidence | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form used in the inference summary."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "peak_time": self.peak_time.isoformat(),
            "peak_score": round(self.peak_score, 6),
            "top_service": self.top_service,
            "top_metric": self.top_metric,
            "windows": self.windows,
            "root_cause_candidates": [c.to_dict() for c in self.candidates],
        }


def anomalous_periods(
    result: ScoreResult,
    edges: Sequence[tuple[str, str]] = (),
    frame: pd.DataFrame | None = None,
    roles: MetricRoles = NO_ROLES,
) -> list[AnomalousPeriod]:
    """Runs of windows above threshold, merged across short normal gaps.

    ``edges`` (caller, callee) is the service set's call graph and ``roles`` what its client-side
    and traffic metrics are, both used to rank root causes
    (:func:`rootcause.rank_root_causes`).
    ``frame`` is the scored combined dataset: its log events before each period are the baseline
    for the period's silences and log evidence (none without it).

    A few normal windows inside one incident should not split its report, but every period gets
    one report naming one origin, so merging across long gaps blends incidents. Merging while the
    windows merely overlapped (a gap up to a whole window) made one demo report span up to six
    incidents, and only 9 of 20 demo incidents had a report naming their root; merging across
    gaps up to a quarter of a window (``MERGE_GAP``) gave 17 of 20, at the price of 7 rather than
    3 reports on fault-free stretches in the same 16 hours. Runs that still held two incidents
    are split where another service takes over (``TAKEOVER``), and runs too short to be more
    than a flicker are dropped (``PERSISTENCE``): 19 of 20 with 22 reports, 2 of them on
    fault-free stretches (``grid:30s``); on ``event``, whose windows last under a minute,
    146 reports (95 fault-free) became 61 (28), naming the root of 18 incidents as before.
    Alerts are decided per window by the alert policy, not here: a flicker still counts there.
    """
    flags = result.is_anomalous.astype(np.int8)
    steps = np.diff(np.concatenate([[0], flags, [0]]))
    runs: list[list[int]] = []
    for first, stop in zip(np.flatnonzero(steps == 1), np.flatnonzero(steps == -1), strict=True):
        if runs and _close(result, runs[-1][1] - 1, int(first)):
            runs[-1][1] = int(stop)
        else:
            runs.append([int(first), int(stop)])
    spans = [span for first, stop in runs for span in _split_at_takeovers(result, first, stop)]
    return [
        _period(result, first, stop, edges, frame, roles)
        for first, stop in spans
        if _persistent(result, first, stop)
    ]


def rank_services(result: ScoreResult, windows: np.ndarray) -> list[tuple[str, float]]:
    """Services by their summed score over the selected ``windows`` (bool ``[N]``), highest first.

    Summing rewards a service that stays off for the whole period over one that is off only
    briefly; the root cause of an incident is usually off from its start to its end, while the
    services it drags along react later or intermittently. (Ranked by the peak instead, a silent
    service lost to its noisy callers in 4 of 4 demo dropouts.)
    """
    totals = result.service_scores[windows].sum(axis=0)
    order = np.argsort(-totals, kind="stable")
    return [(result.services[i], float(totals[i])) for i in order]


def _close(result: ScoreResult, last: int, first: int) -> bool:
    """Whether window ``first`` ends within ``MERGE_GAP`` window durations after ``last``."""
    duration = result.ends[last] - result.starts[last]
    return bool(result.ends[first] - result.ends[last] <= MERGE_GAP * duration)


def _persistent(result: ScoreResult, first: int, stop: int) -> bool:
    """Whether the anomalous windows of ``[first, stop)`` end ``PERSISTENCE`` windows apart."""
    anomalous = first + np.flatnonzero(result.is_anomalous[first:stop])
    if len(anomalous) == 0:
        return False
    duration = np.median(result.ends[first:stop] - result.starts[first:stop])
    return bool(result.ends[anomalous[-1]] - result.ends[anomalous[0]] >= PERSISTENCE * duration)


def _split_at_takeovers(result: ScoreResult, first: int, stop: int) -> list[tuple[int, int]]:
    """``[first, stop)`` cut where a new service stays the top-scoring one for ``TAKEOVER``.

    A long alert run can hold successive incidents with different origins (on the demo, a
    frontend spike followed half an hour later by a shipping level shift, without a normal window
    between them), and one report names one origin. Brief changes of the top service are noise
    or an incident's echo and do not cut; an incident's root usually tops its windows for most of
    the incident plus a window.
    """
    top = result.service_scores[first:stop].argmax(axis=1)
    duration = result.ends[first] - result.starts[first]
    cuts: list[int] = []
    owner: int | None = None
    begin = 0
    for i in range(1, len(top) + 1):
        if i < len(top) and top[i] == top[begin]:
            continue
        steady = result.ends[first + i - 1] - result.ends[first + begin] >= TAKEOVER * duration
        if steady and owner is not None and top[begin] != owner:
            cuts.append(first + begin)
        if steady:
            owner = int(top[begin])
        begin = i
    bounds = [first, *cuts, stop]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _period(
    result: ScoreResult,
    first: int,
    stop: int,
    edges: Sequence[tuple[str, str]],
    frame: pd.DataFrame | None,
    roles: MetricRoles,
) -> AnomalousPeriod:
    peak = first + int(np.argmax(result.window_scores[first:stop]))
    inside = np.zeros(len(result.window_scores), dtype=bool)
    inside[first:stop] = True
    start, end = result.starts[first], result.ends[stop - 1]
    logs = None if frame is None else log_evidence(frame, start, end, result.services)
    candidates = rank_period(result, inside, edges, frame, logs, roles)
    return AnomalousPeriod(
        start=start,
        end=end,
        peak_time=result.ends[peak],
        peak_score=float(result.window_scores[peak]),
        top_service=candidates[0].service,
        top_metric=candidates[0].metric,
        windows=stop - first,
        candidates=tuple(candidates[:CANDIDATES_REPORTED]),
        logs=logs,
    )
