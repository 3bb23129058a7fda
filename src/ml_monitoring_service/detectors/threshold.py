"""Turning validation scores into the persisted alert threshold.

Kept apart from the detectors so the threshold policy can change (percentile today, extreme-value
fits later) without retraining any model.
"""

from __future__ import annotations

import numpy as np

from ml_monitoring_service.errors import DataValidationError


def percentile_threshold(validation_scores: np.ndarray, percentile: float) -> float:
    """The ``percentile``-th percentile of window scores on normal validation data.

    With ``percentile=99`` roughly 1 % of normal windows would alert; the operator trades false
    alarms for sensitivity with this one number.
    """
    finite = validation_scores[np.isfinite(validation_scores)]
    if finite.size == 0:
        raise DataValidationError("cannot set a threshold: no finite validation scores")
    return float(np.percentile(finite, percentile))
