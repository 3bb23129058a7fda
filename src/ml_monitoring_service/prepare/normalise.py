"""Robust per-(service, feature) scaling, fitted on training data only.

Median and inter-quartile range are used instead of mean and standard deviation because training
data from production is rarely perfectly clean: a few spikes should not move the reference. The
statistics are saved with the model and reused unchanged at inference, so scores from different
runs are comparable and no information from the scored period leaks into its own scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_monitoring_service.errors import DataValidationError, NotFittedError

# IQR of a standard normal; dividing by it makes the scale comparable to a standard deviation.
_IQR_TO_SIGMA = 1.349
# Below this a series is treated as constant; its scale then comes from its magnitude instead.
_MIN_SCALE = 1e-6


@dataclass
class RobustScaler:
    """Maps raw values to ``(x - median) / scale`` per service and feature, clipped to ``±clip``.

    Clipping keeps one absurd value (a counter reset, a unit bug) from dominating training losses;
    a clipped value is still ``clip`` robust standard deviations away, which is plenty to alert on.
    """

    clip: float = 20.0
    median_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, values: np.ndarray, min_scale: np.ndarray | None = None) -> RobustScaler:
        """Fit on ``[T, S, F]`` training values (``NaN`` ignored).

        ``min_scale`` (``[F]``, optional) is the smallest scale per feature: the resolution a
        feature is measured at, where that is coarser than its spread in training.
        """
        if values.ndim != 3 or values.shape[0] == 0:
            raise DataValidationError(
                f"scaler needs a non-empty [T, S, F] array, got shape {values.shape}"
            )
        with np.errstate(all="ignore"):
            median = np.nanmedian(values, axis=0)
            q75, q25 = np.nanpercentile(values, [75, 25], axis=0)
            std = np.nanstd(values, axis=0)
        scale = (q75 - q25) / _IQR_TO_SIGMA
        # Near-constant series (common: memory pinned at a limit, cpu mostly 0) have IQR 0; fall
        # back to the standard deviation, then to a tenth of the magnitude, so a move of one unit
        # on a constant series is not scored as a million-sigma event.
        scale = np.where(scale > _MIN_SCALE, scale, std)
        magnitude_floor = np.maximum(np.abs(median) * 0.1, 1.0)
        scale = np.where(scale > _MIN_SCALE, scale, magnitude_floor)
        if min_scale is not None:
            scale = np.maximum(scale, min_scale[None, :])
        self.median_ = np.nan_to_num(median, nan=0.0)
        self.scale_ = np.nan_to_num(scale, nan=1.0)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scale ``[T, S, F]`` values; never-observed entries (``NaN``) become 0, the median."""
        if self.median_ is None or self.scale_ is None:
            raise NotFittedError("RobustScaler.transform called before fit")
        if values.shape[1:] != self.median_.shape:
            raise DataValidationError(
                f"scaler was fitted on (services, features) = {self.median_.shape}, "
                f"got {values.shape[1:]}"
            )
        scaled = (values - self.median_) / self.scale_
        return np.clip(np.nan_to_num(scaled, nan=0.0), -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state, saved inside the model directory."""
        if self.median_ is None or self.scale_ is None:
            raise NotFittedError("cannot save an unfitted RobustScaler")
        return {"clip": self.clip, "median": self.median_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RobustScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(
            clip=float(state["clip"]),
            median_=np.asarray(state["median"], dtype=np.float64),
            scale_=np.asarray(state["scale"], dtype=np.float64),
        )
