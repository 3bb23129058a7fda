"""Scoring a detector against labelled incidents: the same code for tests, benchmarks and docs.

A window is labelled anomalous when it overlaps an incident. Root-cause quality is the rank of the
incident's root service in the shipped root-cause ranking of the windows overlapping the incident
(:func:`ml_monitoring_service.rootcause.rank_period`: graph-aware when ``edges`` are given, and
aware of silent services when the scored data's log events are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.metric_roles import NO_ROLES, MetricRoles
from ml_monitoring_service.rootcause import rank_period


@dataclass(frozen=True)
class LabelledSpan:
    """The part of an incident a detector is judged on: where, which service, since when."""

    service: str
    start: pd.Timestamp
    end: pd.Timestamp


def window_labels(result: ScoreResult, spans: Sequence[LabelledSpan]) -> np.ndarray:
    """``[N]`` bool: the window overlaps at least one labelled span."""
    labels = np.zeros(len(result.window_scores), dtype=bool)
    for span in spans:
        labels |= np.asarray((result.starts <= span.end) & (result.ends >= span.start))
    return labels


def root_cause_ranks(
    result: ScoreResult,
    spans: Sequence[LabelledSpan],
    edges: Sequence[tuple[str, str]] = (),
    frame: pd.DataFrame | None = None,
    roles: MetricRoles = NO_ROLES,
) -> list[int | None]:
    """1-based rank of each span's service in the ranking of its windows; ``None`` if unscored.

    ``edges`` (caller, callee) is the call graph the ranking may use with the set's metric
    ``roles``, and ``frame`` the scored combined dataset whose log events reveal silent
    services, as in the inference summary.
    """
    ranks: list[int | None] = []
    for span in spans:
        inside = np.asarray((result.starts <= span.end) & (result.ends >= span.start))
        if not inside.any():
            ranks.append(None)
            continue
        ranking = [c.service for c in rank_period(result, inside, edges, frame, roles=roles)]
        ranks.append(ranking.index(span.service) + 1)
    return ranks


@dataclass(frozen=True)
class DetectionQuality:
    """Headline numbers of one scored, labelled run."""

    roc_auc: float
    pr_auc: float
    precision: float
    recall: float
    f1: float
    events_detected: int
    events: int
    root_cause_top1: float

    def as_dict(self) -> dict[str, float | int]:
        """Plain numbers for JSON output."""
        return dict(self.__dict__)


def detection_quality(
    result: ScoreResult,
    spans: Sequence[LabelledSpan],
    edges: Sequence[tuple[str, str]] = (),
    frame: pd.DataFrame | None = None,
    roles: MetricRoles = NO_ROLES,
) -> DetectionQuality:
    """ROC/PR AUC, precision/recall/F1 at the persisted threshold, event recall, top-1 cause.

    ``edges``, ``frame`` and ``roles`` feed the root-cause ranking
    (:func:`root_cause_ranks`).
    """
    labels = window_labels(result, spans)
    if labels.all() or not labels.any():
        raise ValueError(
            f"need both normal and anomalous windows; {labels.sum()} of {labels.size} are anomalous"
        )
    predicted = result.is_anomalous
    true_positive = float(np.sum(predicted & labels))
    precision = true_positive / max(float(predicted.sum()), 1.0)
    recall = true_positive / float(labels.sum())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    detected = sum(
        bool(predicted[np.asarray((result.starts <= s.end) & (result.ends >= s.start))].any())
        for s in spans
    )
    ranks = [r for r in root_cause_ranks(result, spans, edges, frame, roles) if r is not None]
    return DetectionQuality(
        roc_auc=float(roc_auc_score(labels, result.window_scores)),
        pr_auc=float(average_precision_score(labels, result.window_scores)),
        precision=precision,
        recall=recall,
        f1=f1,
        events_detected=detected,
        events=len(spans),
        root_cause_top1=float(np.mean([r == 1 for r in ranks])) if ranks else float("nan"),
    )
