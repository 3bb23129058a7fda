"""Model lifecycle: which retrained candidate becomes current, and what happens to the others.

A candidate is refused (and kept under ``rejected/`` with its reason) when

* ``contaminated``: the current model finds more than ``max_training_anomaly_rate`` of the
  candidate's training windows anomalous, so the new period probably holds an incident the
  candidate would learn as normal (style note 6);
* ``worse_validation``: its mean uncalibrated error on its own validation data exceeds the current
  model's on the same data by more than ``validation_tolerance`` (see
  :meth:`~ml_monitoring_service.detectors.base.WindowDetector.mean_error`).

Without a usable current model (none yet, or trained for other services/metrics) the candidate is
promoted. Promotion writes through staging, moves ``CURRENT`` atomically and prunes to the newest
``keep_versions``. Declared maintenance windows (``lifecycle.exclude``) are removed from the
training rows before densifying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_monitoring_service.config import LifecycleConfig
from ml_monitoring_service.data.schema import TIMESTAMP
from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.errors import ModelMismatchError
from ml_monitoring_service.pipeline.training import Candidate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """Whether to promote; ``reason`` is a short metric label, ``detail`` the numbers."""

    promote: bool
    reason: str
    detail: str


def drop_excluded(
    frame: pd.DataFrame, exclude: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
) -> pd.DataFrame:
    """Rows of ``frame`` outside every ``[start, end)`` maintenance/incident window."""
    if not exclude or frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    for start, end in exclude:
        keep &= ~((frame[TIMESTAMP] >= start) & (frame[TIMESTAMP] < end))
    return frame[keep].reset_index(drop=True)


def judge(candidate: Candidate, current: WindowDetector | None, policy: LifecycleConfig) -> Verdict:
    """Decide promotion of ``candidate`` over ``current`` (see the module docstring)."""
    if current is None:
        return Verdict(True, "first_model", "no current model")
    try:
        rate = float(current.score(candidate.train).is_anomalous.mean())
        current_error = current.mean_error(candidate.val)
    except ModelMismatchError as exc:
        return Verdict(True, "layout_changed", str(exc))
    if rate > policy.max_training_anomaly_rate:
        detail = (
            f"{rate:.1%} of the new training windows are anomalous under the current model "
            f"(limit {policy.max_training_anomaly_rate:.1%})"
        )
        return Verdict(False, "contaminated", detail)
    candidate_error = candidate.detector.mean_error(candidate.val)
    limit = current_error * (1 + policy.validation_tolerance)
    detail = (
        f"validation error {candidate_error:.4g} vs current {current_error:.4g} "
        f"(limit {limit:.4g}); training anomaly rate {rate:.1%}"
    )
    if candidate_error > limit:
        return Verdict(False, "worse_validation", detail)
    return Verdict(True, "better_or_equal", detail)


def register_model(tracking_uri: str, name: str, version_dir: Path, version: str) -> None:
    """Record a promoted model in the MLflow model registry (best effort, never fails a job)."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name)
        client.create_model_version(
            name, source=version_dir.resolve().as_uri(), tags={"model_version": version}
        )
    except Exception as exc:  # noqa: BLE001 - the registry is an audit trail only
        logger.warning("MLflow registry entry for %s %s failed: %s", name, version, exc)
