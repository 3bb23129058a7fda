"""Graph-aware root-cause ranking for one anomalous period.

Services are ranked by their summed service score over the period's windows (as
:func:`pipeline.periods.rank_services` does), then a service whose anomaly is *explained* by a
callee is pushed below the unexplained ones. A caller is explained when one of the services it
calls, directly or through other callees, is anomalous in the period and deviated no later than
the caller did: slowness and failed calls flow up the call graph, from callee to caller, so the
caller's larger score is usually the echo and the quieter callee the cause.

*Onset* is the first window of the period whose service score exceeds the service's normal
``level`` (default: the detector's persisted window threshold, as a service score is the largest of
its metric scores and the window threshold is on the same scale). A service that never exceeds its
level in the period is not anomalous and explains nothing.

Each candidate carries a confidence in [0, 1] (its share of the summed scores, explained services
discounted, made non-increasing down the ranking, so the confidences sum to at most 1) and short
evidence an operator can check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.detectors.base import ScoreResult

EXPLAINED_WEIGHT = 0.1  # confidence weight of an explained service relative to its score share


@dataclass(frozen=True)
class Candidate:
    """One ranked root-cause candidate: a service, its most anomalous metric, and why."""

    service: str
    metric: str
    score: float  # summed service score over the period's windows
    confidence: float
    onset: pd.Timestamp | None  # end of the first window above the service's level
    explained_by: str | None  # the anomalous callee that explains this service, if any

    @property
    def evidence(self) -> str:
        """One line: summed score, onset and the dependency that explains it."""
        onset = "never above its normal level" if self.onset is None else f"onset {self.onset}"
        text = f"summed score {self.score:.1f}, {onset}, top metric {self.metric}"
        if self.explained_by is not None:
            text += f"; explained by anomalous callee {self.explained_by}"
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form used in the inference summary."""
        return {
            "service": self.service,
            "metric": self.metric,
            "confidence": round(self.confidence, 4),
            "onset": None if self.onset is None else self.onset.isoformat(),
            "evidence": self.evidence,
        }


def rank_root_causes(
    result: ScoreResult,
    windows: np.ndarray,
    edges: Sequence[tuple[str, str]] = (),
    levels: np.ndarray | None = None,
    lead: int = 1,
) -> list[Candidate]:
    """Every service of ``result``, most likely root cause first.

    ``windows`` is the period as bool ``[N]``; ``edges`` are (caller, callee) pairs (unknown
    services are ignored; none gives the plain summed-score ranking); ``levels`` ``[S]`` is each
    service's normal level (default: ``result.threshold`` for every service); a callee explains a
    caller only when its onset is at least ``lead`` windows earlier.
    """
    scores = result.service_scores[windows]  # [W, S]
    totals = scores.sum(axis=0)
    level = np.full(len(result.services), result.threshold) if levels is None else levels
    onsets = _onsets(scores, level)
    explained = _explained_by(result.services, edges, onsets, lead)
    order = sorted(range(len(totals)), key=lambda s: (explained[s] is not None, -totals[s]))
    confidences = _confidences(totals, [explained[s] is not None for s in order], order)
    ends = result.ends[windows]
    peaks = result.metric_scores[windows].max(axis=0)  # [S, F]
    return [
        Candidate(
            service=result.services[s],
            metric=result.features[int(np.argmax(peaks[s]))],
            score=float(totals[s]),
            confidence=confidences[rank],
            onset=_onset_time(ends, onsets[s]),
            explained_by=explained[s],
        )
        for rank, s in enumerate(order)
    ]


def _onset_time(ends: pd.DatetimeIndex, onset: int | None) -> pd.Timestamp | None:
    return None if onset is None else ends[onset]


def _onsets(scores: np.ndarray, level: np.ndarray) -> list[int | None]:
    """Per service, the index of the first window above its level; ``None`` if none is."""
    above = scores > level[None, :]
    return [int(np.argmax(above[:, s])) if above[:, s].any() else None for s in range(len(level))]


def _explained_by(
    services: Sequence[str],
    edges: Sequence[tuple[str, str]],
    onsets: Sequence[int | None],
    lead: int,
) -> list[str | None]:
    """Per service, a downstream service whose onset is ``lead`` windows earlier, or ``None``.

    Downstream means reachable along caller → callee edges; the earliest such service is named
    (ties: the nearest).
    """
    index = {name: i for i, name in enumerate(services)}
    callees: dict[int, list[int]] = {i: [] for i in range(len(services))}
    for caller, callee in edges:
        if caller in index and callee in index and caller != callee:
            callees[index[caller]].append(index[callee])
    found: list[str | None] = []
    for s, onset in enumerate(onsets):
        best: tuple[int, int, int] | None = None  # (onset, hops, service)
        for hops, d in _downstream(s, callees):
            d_onset = onsets[d]
            if d_onset is not None and (onset is None or d_onset + lead <= onset):
                key = (d_onset, hops, d)
                best = key if best is None or key < best else best
        found.append(None if best is None else services[best[2]])
    return found


def _downstream(source: int, callees: dict[int, list[int]]) -> list[tuple[int, int]]:
    """(hops, service) for every service reachable from ``source``, breadth first."""
    seen = {source}
    frontier = [source]
    reached: list[tuple[int, int]] = []
    hops = 0
    while frontier:
        hops += 1
        frontier = [d for s in frontier for d in callees[s] if d not in seen]
        frontier = list(dict.fromkeys(frontier))
        seen.update(frontier)
        reached += [(hops, d) for d in frontier]
    return reached


def _confidences(
    totals: np.ndarray, explained: Sequence[bool], order: Sequence[int]
) -> list[float]:
    """Score shares in ranking ``order``, explained ones discounted, made non-increasing."""
    weights = np.array(
        [
            totals[s] * (EXPLAINED_WEIGHT if e else 1.0)
            for s, e in zip(order, explained, strict=True)
        ]
    )
    weights = np.clip(weights, 0.0, None)
    shares = weights / weights.sum() if weights.sum() > 0 else np.zeros_like(weights)
    return [float(c) for c in np.minimum.accumulate(shares)]
