"""VUS-PR and the other point-wise metrics: hand-computed values and properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from ml_monitoring_service.metrics_vus import (
    best_f1,
    buffered_labels,
    label_ranges,
    point_adjusted_scores,
    point_metrics,
    range_auc,
    vus,
)


def _segments(n: int, starts: list[int], length: int) -> np.ndarray:
    labels = np.zeros(n, dtype=int)
    for s in starts:
        labels[s : s + length] = 1
    return labels


def test_label_ranges_are_inclusive() -> None:
    ranges = label_ranges(np.array([1, 0, 1, 1, 0, 0, 1]))
    assert ranges.tolist() == [[0, 0], [2, 3], [6, 6]]


def test_buffered_labels_hand_computed() -> None:
    soft = buffered_labels(np.array([0, 0, 1, 1, 0, 0]), 4)
    expected = [np.sqrt(0.5), np.sqrt(0.75), 1.0, 1.0, np.sqrt(0.75), 0.0]
    assert soft == pytest.approx(expected)
    assert buffered_labels(np.array([0, 1, 0]), 0).tolist() == [0.0, 1.0, 0.0]


def test_range_auc_hand_computed_at_buffer_zero() -> None:
    # Ranges [1, 2] and [5, 5]; P = 3. Thresholds at every score, from the top:
    # 0.9 → tpr 1/3·1/2, prec 1; 0.8 → same tpr, prec 1/2; 0.4 → tpr 2/3, prec 2/3;
    # 0.3 → tpr 1, prec 3/4; then tpr stays 1. PR area = 1/6 + 1/2·7/12 + 1/3·17/24 = 25/36.
    labels = np.array([0, 1, 1, 0, 0, 1])
    scores = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.4])
    area = range_auc(labels, scores, 0, n_thresholds=6)
    assert area.pr_auc == pytest.approx(25 / 36)
    assert area.roc_auc == pytest.approx(13 / 18)


def test_perfect_scores() -> None:
    labels = _segments(2000, [100, 700, 1500], 20)
    perfect = labels.astype(float)
    assert range_auc(labels, perfect, 0).pr_auc == pytest.approx(1.0)
    assert range_auc(labels, perfect, 0).roc_auc == pytest.approx(1.0)
    volume = vus(labels, perfect, 32)
    assert volume.areas[0].pr_auc == pytest.approx(1.0)
    # With a buffer the reference definition charges a binary score for the buffer steps it
    # misses (recall is against (P + buffered mass) / 2): below 1 by construction. A score that
    # also decays into the buffer, as real detectors' scores do around an anomaly, does better.
    assert 0.8 < volume.vus_pr < 1.0
    decaying = buffered_labels(labels, 32) + labels
    assert volume.vus_pr < vus(labels, decaying, 32).vus_pr


def _naive_range_pr(labels: np.ndarray, scores: np.ndarray, buffer: int) -> float:
    """Direct, loop-by-loop transcription of the definition, for cross-checking."""
    soft = buffered_labels(labels, buffer)
    ranges = label_ranges(soft)
    p_new = (labels.sum() + soft.sum()) / 2
    ordered = sorted(scores, reverse=True)
    tprs, precisions = [0.0], [1.0]
    for t in [ordered[i] for i in np.linspace(0, len(scores) - 1, 250).astype(int)]:
        predicted = scores >= t
        tp = sum(soft[i] for i in range(len(scores)) if predicted[i])
        hit = sum(any(predicted[s : e + 1]) for s, e in ranges)
        tprs.append(min(tp / p_new, 1.0) * hit / len(ranges))
        precisions.append(tp / predicted.sum())
    return sum(
        (tprs[i + 1] - tprs[i]) * (precisions[i + 1] + precisions[i]) / 2
        for i in range(len(tprs) - 1)
    )


@pytest.mark.parametrize("buffer", [0, 3, 8])
def test_range_auc_matches_a_naive_transcription(buffer: int) -> None:
    rng = np.random.default_rng(buffer)
    labels = _segments(600, [50, 200, 201, 420], 7)
    scores = labels * rng.random(600) + rng.random(600)
    assert range_auc(labels, scores, buffer).pr_auc == pytest.approx(
        _naive_range_pr(labels, scores, buffer)
    )


def test_buffer_zero_is_the_point_wise_range_pr_auc() -> None:
    rng = np.random.default_rng(0)
    labels = _segments(3000, [100, 900, 2000], 30)
    scores = labels * rng.random(3000) + rng.random(3000)
    assert vus(labels, scores, 0).vus_pr == range_auc(labels, scores, 0).pr_auc
    assert vus(labels, scores, 4).areas[0] == range_auc(labels, scores, 0)
    # Ranges all detected at every threshold: existence is 1 and the curve is the point-wise PR
    # curve (sampled at 250 thresholds), so it is close to average precision.
    dense = labels + 0.5 * rng.random(3000)
    assert range_auc(labels, dense, 0).pr_auc == pytest.approx(
        average_precision_score(labels, dense), abs=0.01
    )


def test_random_scores_score_about_the_anomaly_ratio() -> None:
    labels = _segments(20000, list(range(500, 19500, 1000)), 50)
    ratio = labels.mean()
    scores = np.random.default_rng(1).random(labels.size)
    assert range_auc(labels, scores, 0).pr_auc == pytest.approx(ratio, abs=0.02)
    assert vus(labels, scores, 16).vus_pr == pytest.approx(ratio, abs=0.03)


def test_vus_is_invariant_to_monotone_transforms_and_rewards_better_scores() -> None:
    labels = _segments(5000, [400, 2000, 4100], 40)
    rng = np.random.default_rng(2)
    good = labels + 0.5 * rng.random(labels.size)
    bad = labels + 3.0 * rng.random(labels.size)
    assert vus(labels, np.exp(good), 16).vus_pr == pytest.approx(vus(labels, good, 16).vus_pr)
    assert vus(labels, good, 16).vus_pr > vus(labels, bad, 16).vus_pr


def test_point_adjustment_and_best_f1() -> None:
    labels = np.array([0, 1, 1, 1, 0, 0])
    scores = np.array([0.0, 0.1, 0.9, 0.2, 0.3, 0.0])
    assert point_adjusted_scores(labels, scores).tolist() == [0.0, 0.9, 0.9, 0.9, 0.3, 0.0]
    assert best_f1(labels, point_adjusted_scores(labels, scores)) == pytest.approx(1.0)
    assert best_f1(labels, scores) == pytest.approx(6 / 7)  # at 0.1: P 3/4, R 1


def test_point_metrics_keys_and_threshold_f1() -> None:
    labels = _segments(500, [100, 300], 10)
    scores = labels + 0.1 * np.random.default_rng(3).random(500)
    metrics = point_metrics(labels, scores, threshold=0.5, max_buffer=8)
    assert metrics["f1_at_threshold"] == pytest.approx(1.0)
    assert metrics["auc_pr"] == pytest.approx(1.0)
    assert metrics["range_pr_auc_buffer0"] == pytest.approx(1.0, abs=0.01)  # 250 thresholds
    assert set(metrics) >= {"vus_pr", "vus_roc", "roc_auc", "best_f1", "pa_best_f1_legacy"}
