"""What some of a service set's metrics mean to the root-cause ranking.

Kept apart from ``rootcause`` so the configuration can name roles without importing the
detectors (and torch) behind the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ml_monitoring_service.detectors.base import ScoreResult

TRAFFIC_WEIGHT = 1 / 3  # weight of a traffic metric's score in the ranking


@dataclass(frozen=True)
class MetricRoles:
    """Metric roles of one service set (``rootcause``'s module docstring says why they matter).

    ``client`` metrics measure a service's calls to its callees (client-side latency); ``traffic``
    metrics count its requests or bytes. Metrics in neither are the service's own health.
    """

    client: tuple[str, ...] = ()
    traffic: tuple[str, ...] = ()

    def ranking_scores(
        self, result: ScoreResult, windows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[W, S]`` service and ``[W, S, F]`` metric scores of the selected ``windows`` (bool
        ``[N]``) as the ranking weighs them."""
        if not set(self.traffic) & set(result.features):
            return result.service_scores[windows], result.metric_scores[windows]
        weights = np.array([TRAFFIC_WEIGHT if f in self.traffic else 1.0 for f in result.features])
        metric_scores = result.metric_scores[windows] * weights
        return metric_scores.max(axis=2), metric_scores


NO_ROLES = MetricRoles()  # every metric is the service's own health
