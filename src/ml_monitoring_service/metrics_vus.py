"""Point-wise anomaly-detection metrics, including VUS-PR (Paparrizos et al., VLDB 2022).

*Volume Under the Surface* evaluates range-based precision/recall curves while the labelled
anomaly ranges are widened by a soft buffer of growing width ``ℓ = 0 … max_buffer`` and averages
the area under each curve. Following the authors' reference definition:

* the buffer adds ``⌊ℓ/2⌋`` steps on each side of every labelled range, weighted
  ``sqrt(1 − d/ℓ)`` at distance ``d`` from the range (labels are clipped to 1);
* at a threshold, TP is the label mass of the predicted steps, recall is
  ``min(TP / P', 1) · existence`` with ``P' = (P + Σ buffered labels) / 2`` and ``existence`` the
  share of (buffered) ranges with at least one predicted step, precision is ``TP / #predicted``,
  FPR is ``(#predicted − TP) / (T − P')``;
* thresholds are ``n_thresholds`` scores taken evenly along the sorted scores (the reference uses
  250), the curve starts at recall 0 / precision 1 and the PR area is by the trapezoid rule.

With ``ℓ = 0`` this is the range-based PR AUC of the point labels. A binary "perfect" score gets
1.0 only at ``ℓ = 0``: with a buffer, ``P'`` exceeds the labelled count and the buffer steps cost
precision, so VUS-PR of a perfect binary score is slightly below 1 by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

N_THRESHOLDS = 250


def label_ranges(labels: np.ndarray) -> np.ndarray:
    """``[K, 2]`` inclusive ``(start, end)`` of each run of non-zero labels."""
    positive = np.concatenate([[0], (np.asarray(labels) > 0).astype(np.int8), [0]])
    change = np.diff(positive)
    return np.stack([np.flatnonzero(change == 1), np.flatnonzero(change == -1) - 1], axis=1)


def buffered_labels(labels: np.ndarray, buffer: int) -> np.ndarray:
    """Soft labels: each range widened by ``buffer // 2`` steps per side, ``sqrt(1 − d/buffer)``."""
    soft = (np.asarray(labels) > 0).astype(np.float64)
    if buffer <= 0:
        return soft
    n = len(soft)
    half = buffer // 2
    for start, end in label_ranges(labels):
        after = np.arange(end, min(end + half, n))
        soft[after] += np.sqrt(1.0 - (after - end) / buffer)
        before = np.arange(max(start - half, 0), start)
        soft[before] += np.sqrt(1.0 - (start - before) / buffer)
    return np.minimum(soft, 1.0)


def _threshold_predictions(scores: np.ndarray, n_thresholds: int) -> np.ndarray:
    """``[n_thresholds, T]`` bool: ``scores >= t`` for thresholds spread along the sorted scores."""
    ordered = -np.sort(-scores)
    picks = np.linspace(0, len(scores) - 1, n_thresholds).astype(int)
    return scores[None, :] >= ordered[picks][:, None]


@dataclass(frozen=True)
class RangeCurveArea:
    """Range-based ROC and PR areas at one buffer width."""

    buffer: int
    roc_auc: float
    pr_auc: float


def range_auc(
    labels: np.ndarray,
    scores: np.ndarray,
    buffer: int,
    *,
    predictions: np.ndarray | None = None,
    n_thresholds: int = N_THRESHOLDS,
) -> RangeCurveArea:
    """Range-based ROC AUC and PR AUC of ``scores`` with labels widened by ``buffer``."""
    labels = np.asarray(labels)
    positives = float(np.sum(labels > 0))
    if positives == 0 or positives == len(labels):
        raise ValueError("range AUC needs both anomalous and normal steps")
    if predictions is None:
        predictions = _threshold_predictions(np.asarray(scores, dtype=np.float64), n_thresholds)
    soft = buffered_labels(labels, buffer)
    ranges = label_ranges(soft)
    p_new = (positives + float(soft.sum())) / 2.0
    tp = predictions.astype(np.float64) @ soft
    predicted = predictions.sum(axis=1).astype(np.float64)
    hits = np.concatenate(
        [np.zeros((len(predictions), 1)), np.cumsum(predictions, axis=1, dtype=np.int64)], axis=1
    )
    per_range = hits[:, ranges[:, 1] + 1] - hits[:, ranges[:, 0]]
    existence = (per_range > 0).mean(axis=1)
    tpr = np.minimum(tp / p_new, 1.0) * existence
    fpr = (predicted - tp) / (len(labels) - p_new)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    tpr_all = np.concatenate([[0.0], tpr, [1.0]])
    fpr_all = np.concatenate([[0.0], fpr, [1.0]])
    precision_all = np.concatenate([[1.0], precision])
    roc = float(np.sum(np.diff(fpr_all) * (tpr_all[1:] + tpr_all[:-1]) / 2))
    pr = float(
        np.sum((tpr_all[1:-1] - tpr_all[:-2]) * (precision_all[1:] + precision_all[:-1]) / 2)
    )
    return RangeCurveArea(buffer, roc, pr)


@dataclass(frozen=True)
class VolumeUnderSurface:
    """VUS-ROC and VUS-PR, and the per-buffer areas they average."""

    vus_roc: float
    vus_pr: float
    areas: tuple[RangeCurveArea, ...]


def vus(
    labels: np.ndarray, scores: np.ndarray, max_buffer: int, n_thresholds: int = N_THRESHOLDS
) -> VolumeUnderSurface:
    """Mean range ROC/PR AUC over buffer widths ``0 … max_buffer``."""
    predictions = _threshold_predictions(np.asarray(scores, dtype=np.float64), n_thresholds)
    areas = tuple(
        range_auc(labels, scores, buffer, predictions=predictions)
        for buffer in range(max_buffer + 1)
    )
    return VolumeUnderSurface(
        vus_roc=float(np.mean([a.roc_auc for a in areas])),
        vus_pr=float(np.mean([a.pr_auc for a in areas])),
        areas=areas,
    )


def best_f1(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 over all thresholds: an upper bound, since it picks the threshold with labels."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0
    )
    return float(f1.max())


def point_adjusted_scores(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores with every labelled range raised to its maximum (the "point adjustment").

    Thresholding these is the legacy point-adjusted protocol: one detected step inside a range
    counts the whole range as detected. It rewards noisy detectors and is reported only as legacy.
    """
    adjusted = np.asarray(scores, dtype=np.float64).copy()
    for start, end in label_ranges(labels):
        adjusted[start : end + 1] = adjusted[start : end + 1].max()
    return adjusted


def f1_at(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean predictions."""
    truth = np.asarray(labels) > 0
    tp = float(np.sum(predicted & truth))
    precision = tp / max(float(predicted.sum()), 1.0)
    recall = tp / max(float(truth.sum()), 1.0)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}


def point_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, max_buffer: int
) -> dict[str, float]:
    """Every point-wise detection number reported by ``scripts/evaluate_public.py``."""
    volume = vus(labels, scores, max_buffer)
    at_threshold = f1_at(labels, scores > threshold)
    return {
        "auc_pr": float(average_precision_score(labels, scores)),
        "vus_pr": volume.vus_pr,
        "vus_roc": volume.vus_roc,
        "range_pr_auc_buffer0": volume.areas[0].pr_auc,
        "roc_auc": float(roc_auc_score(labels, scores)),
        "f1_at_threshold": at_threshold["f1"],
        "precision_at_threshold": at_threshold["precision"],
        "recall_at_threshold": at_threshold["recall"],
        "best_f1": best_f1(labels, scores),
        "pa_best_f1_legacy": best_f1(labels, point_adjusted_scores(labels, scores)),
    }
