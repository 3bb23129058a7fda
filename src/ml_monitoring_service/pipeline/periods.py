"""Group anomalous windows into periods an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.detectors.base import ScoreResult


@dataclass(frozen=True)
class AnomalousPeriod:
    """A maximal run of consecutive anomalous windows, blamed on its peak window's top channel."""

    start: pd.Timestamp
    end: pd.Timestamp
    peak_time: pd.Timestamp
    peak_score: float
    top_service: str
    top_metric: str
    windows: int  # windows in the span, including short normal gaps that were merged

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
        }


def anomalous_periods(result: ScoreResult) -> list[AnomalousPeriod]:
    """Runs of windows above threshold, merged while their time spans overlap.

    Windows overlap in time, so two runs separated by a few normal windows usually describe one
    incident; reporting them once keeps the alert count honest.
    """
    flags = result.is_anomalous.astype(np.int8)
    edges = np.diff(np.concatenate([[0], flags, [0]]))
    runs: list[list[int]] = []
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if runs and result.starts[int(first)] <= result.ends[runs[-1][1] - 1]:
            runs[-1][1] = int(stop)
        else:
            runs.append([int(first), int(stop)])
    return [_period(result, first, stop) for first, stop in runs]


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


def _period(result: ScoreResult, first: int, stop: int) -> AnomalousPeriod:
    peak = first + int(np.argmax(result.window_scores[first:stop]))
    inside = np.zeros(len(result.window_scores), dtype=bool)
    inside[first:stop] = True
    top_service = rank_services(result, inside)[0][0]
    service_index = result.services.index(top_service)
    metric_index = int(np.argmax(result.metric_scores[first:stop, service_index].max(axis=0)))
    return AnomalousPeriod(
        start=result.starts[first],
        end=result.ends[stop - 1],
        peak_time=result.ends[peak],
        peak_score=float(result.window_scores[peak]),
        top_service=top_service,
        top_metric=result.features[metric_index],
        windows=stop - first,
    )
