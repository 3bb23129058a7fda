"""Anomaly detectors with a common fit/score/save/load interface.

Importing this package registers every detector kind, so ``WindowDetector.load`` can rebuild any
saved model from its ``config.json``.
"""

from ml_monitoring_service.detectors.base import (
    ScoreResult,
    WindowDetector,
    detector_class,
    detector_kinds,
)
from ml_monitoring_service.detectors.baselines import (
    IsolationForestDetector,
    PCADetector,
    RandomDetector,
    RobustZScoreDetector,
)
from ml_monitoring_service.detectors.transformer import TransformerAutoencoderDetector

__all__ = [
    "IsolationForestDetector",
    "PCADetector",
    "RandomDetector",
    "RobustZScoreDetector",
    "ScoreResult",
    "TransformerAutoencoderDetector",
    "WindowDetector",
    "detector_class",
    "detector_kinds",
]
