"""The detector interface shared by the transformer autoencoder and every baseline.

Public methods (``fit``, ``score``, ``save``, ``load``) validate inputs and own everything that
must be identical across detectors for a fair comparison: robust scaling fitted on training data,
the sliding windows, per-channel calibration of errors on validation data, the aggregation into
window/service/metric scores and the persisted threshold. Subclasses implement only the maths:

* ``_fit_windows(train, val)`` learns from scaled windows;
* ``_channel_errors(windows)`` returns ``[N, S, F]`` non-negative errors (higher = more anomalous),
  or ``[K, N, S, F]`` for ``K`` error *components* (e.g. reconstruction error over the whole
  window and over its last steps) that are calibrated on validation data one by one and then
  averaged with the class's ``component_weights``;
* a class may also set ``deviation_weight``: the base class then adds each channel's squared
  deviation from the training level (its robust z-score) as one more component;
* ``_save_state(dir)`` / ``_load_state(dir)`` persist what ``_fit_windows`` learned.

Fitted attributes end in ``_`` (scikit-learn convention); the constructor only stores parameters.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from ml_monitoring_service import __version__
from ml_monitoring_service.detectors.threshold import percentile_threshold
from ml_monitoring_service.errors import DataValidationError, ModelMismatchError, NotFittedError
from ml_monitoring_service.prepare.densify import ServiceTensor, scale_floors
from ml_monitoring_service.prepare.normalise import RobustScaler
from ml_monitoring_service.prepare.time_features import cyclic_time_features
from ml_monitoring_service.prepare.windows import Windows, make_windows

# 2: ``channel_scale`` is ``[K, S, F]`` (one scale per error component), and the transformer scores
# two components; a format-1 model would be scored differently, so it must be retrained.
# 3: the model keeps the span its ``event_count`` was counted over (fitted to the training data's
# event rate); a format-2 model does not know it.
# 4: the transformer scores a third component (the squared deviation from the training level,
# ``deviation_weight``), so its ``channel_scale`` has three rows; a format-3 model has two.
# 5: the tensors gain ``seconds_since_event`` (prepare/densify.py); a format-4 model lacks it.
MODEL_FORMAT_VERSION = 5
_REGISTRY: dict[str, type[WindowDetector]] = {}


@dataclass(frozen=True)
class ScoreResult:
    """Scores for consecutive windows; for every array, higher = more anomalous.

    ``window_scores`` ``[N]``, ``service_scores`` ``[N, S]``, ``metric_scores`` ``[N, S, F]``.
    Metric scores are errors divided by that channel's mean validation error (averaged over the
    detector's error components), so 1 means "as unusual as a typical validation window" and
    channels are comparable with each other.
    """

    window_scores: np.ndarray
    service_scores: np.ndarray
    metric_scores: np.ndarray
    starts: pd.DatetimeIndex
    ends: pd.DatetimeIndex
    services: tuple[str, ...]
    features: tuple[str, ...]
    threshold: float

    @property
    def is_anomalous(self) -> np.ndarray:
        """``[N]`` bool: window score above the persisted threshold."""
        return self.window_scores > self.threshold


class WindowDetector(ABC):
    """Base class: see the module docstring for the split between public methods and hooks."""

    kind: ClassVar[str]
    # Weight of each error component in the calibrated metric score (one entry per component).
    component_weights: ClassVar[tuple[float, ...]] = (1.0,)
    # Weight of the squared deviation from the training level, appended as a last component when
    # > 0 (:meth:`_scored_components`). It learns nothing beyond the scaler, so unlike a model's
    # own errors it can be calibrated on the training windows as well as the validation ones,
    # which together span more of a daily cycle than the validation stretch alone.
    deviation_weight: ClassVar[float] = 0.0

    def __init__(
        self,
        *,
        window_size: int = 32,
        train_stride: int = 4,
        score_stride: int = 1,
        threshold_percentile: float = 99.0,
    ) -> None:
        self.window_size = window_size
        self.train_stride = train_stride
        self.score_stride = score_stride
        self.threshold_percentile = threshold_percentile

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):
            _REGISTRY[cls.kind] = cls

    # ----------------------------------------------------------------------------------- public

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (including the base class's), as saved in ``config.json``."""
        names = [
            name
            for klass in type(self).__mro__
            if klass is not ABC and "__init__" in vars(klass)
            for name, parameter in inspect.signature(vars(klass)["__init__"]).parameters.items()
            if name != "self" and parameter.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in dict.fromkeys(names)}

    def fit(self, train: ServiceTensor, val: ServiceTensor) -> Self:
        """Learn normal behaviour from ``train``; calibrate scores and threshold on ``val``
        (the deviation component on both, see ``deviation_weight``)."""
        _check_same_layout(train, val, "validation data")
        self.services_ = train.services
        self.features_ = train.features
        self.count_horizon_ = train.count_horizon
        self.scaler_ = RobustScaler().fit(train.values, min_scale=scale_floors(train))
        train_windows = self._windows(train, self.train_stride)
        val_windows = self._windows(val, self.score_stride)
        self._fit_windows(train_windows, val_windows)
        val_errors = self._scored_components(val_windows)
        self.channel_scale_ = _channel_scale(val_errors, self.window_size)
        if self.deviation_weight:
            deviations = np.concatenate([train_windows.mean_squared_deviation(), val_errors[-1]])
            self.channel_scale_[-1] = _channel_scale(deviations[None], self.window_size)[0]
        val_window_scores = self._aggregate(val_errors, val_windows)[0]
        self.threshold_ = percentile_threshold(val_window_scores, self.threshold_percentile)
        self.metadata_ = {
            "training_start": str(train.timestamps[0]),
            "training_end": str(train.timestamps[-1]),
            "validation_start": str(val.timestamps[0]),
            "validation_end": str(val.timestamps[-1]),
            "training_windows": len(train_windows),
            "validation_windows": len(val_windows),
            "data_fingerprint": _fingerprint(train.values),
        }
        return self

    def score(self, data: ServiceTensor) -> ScoreResult:
        """Score every window of ``data`` (stride ``score_stride``, last window always included)."""
        self._check_counted_alike(data)
        windows = self._windows(data, self.score_stride)
        errors = self._scored_components(windows)
        window_scores, service_scores, metric_scores = self._aggregate(errors, windows)
        return ScoreResult(
            window_scores=window_scores,
            service_scores=service_scores,
            metric_scores=metric_scores,
            starts=windows.starts,
            ends=windows.ends,
            services=self.services_,
            features=self.features_,
            threshold=self.threshold_,
        )

    def mean_error(self, data: ServiceTensor) -> float:
        """Mean *uncalibrated* channel error over every window of ``data`` (lower = better fit).

        Used to compare a retrained candidate with the current model on the candidate's
        validation data. Only the first error component counts: it is the model's own fit (the
        others, like the transformer's recent-steps error, re-weight the same fit).
        Calibrated scores cannot be compared (each model divides by its own validation error, so
        both average ~1); raw errors are in each model's robust-scaled units, which for two
        models of the same set trained on adjacent periods are close, so the comparison holds up
        to the tolerance the caller applies.
        """
        self._check_counted_alike(data)
        return float(self._checked_errors(self._windows(data, self.score_stride))[0].mean())

    def check_compatible(self, services: tuple[str, ...], features: tuple[str, ...]) -> None:
        """Raise :class:`ModelMismatchError` unless the model was trained on exactly these."""
        self._check_fitted()
        if tuple(services) != self.services_ or tuple(features) != self.features_:
            raise ModelMismatchError(
                f"model was trained for services {list(self.services_)} and features "
                f"{list(self.features_)}, but the data has services {list(services)} and features "
                f"{list(features)}; retrain the model for this service set"
            )

    def _check_counted_alike(self, data: ServiceTensor) -> None:
        """Same services and features, and ``event_count`` counted over the same span: a count
        over another span has another scale, and every window would look anomalous."""
        self.check_compatible(data.services, data.features)
        if data.count_horizon != self.count_horizon_:
            raise ModelMismatchError(
                f"model counts events over {self.count_horizon_}, but the data was counted over "
                f"{data.count_horizon}; densify with the model's count_horizon_"
            )

    def save(self, directory: Path) -> None:
        """Write a self-describing model directory (config, state, scaler, metadata)."""
        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory / "config.json", {"kind": self.kind, "params": self.get_params()})
        _write_json(directory / "normalisation.json", self.scaler_.to_dict())
        _write_json(
            directory / "metadata.json",
            {
                **self.metadata_,
                "format_version": MODEL_FORMAT_VERSION,
                "package_version": __version__,
                "services": list(self.services_),
                "features": list(self.features_),
                "count_horizon": _duration_text(self.count_horizon_),
                "threshold": self.threshold_,
                "threshold_percentile": self.threshold_percentile,
                "channel_scale": self.channel_scale_.tolist(),
            },
        )
        self._save_state(directory)

    @classmethod
    def load(cls, directory: Path, device: str | None = None) -> WindowDetector:
        """Rebuild a detector saved by :meth:`save`; the class is read from ``config.json``.

        ``device`` is where this host runs the model (``auto``, ``cpu``, ``cuda``) and replaces the
        one it was trained with, so a model trained on a GPU server serves from a CPU-only host;
        ``None`` keeps the saved setting. Detectors without a device ignore it.
        """
        config = _read_json(directory / "config.json")
        metadata = _read_json(directory / "metadata.json")
        if metadata.get("format_version") != MODEL_FORMAT_VERSION:
            raise ModelMismatchError(
                f"{directory}: model format {metadata.get('format_version')} is not supported "
                f"(expected {MODEL_FORMAT_VERSION}: models saved by an older release are "
                "scored differently); retrain the model"
            )
        try:
            klass = _REGISTRY[config["kind"]]
        except KeyError:
            raise ModelMismatchError(
                f"{directory}: unknown detector kind {config.get('kind')!r}; "
                f"known: {sorted(_REGISTRY)}"
            ) from None
        params = dict(config["params"])
        if device is not None and "device" in params:
            params["device"] = device
        detector = klass(**params)
        detector.services_ = tuple(metadata["services"])
        detector.features_ = tuple(metadata["features"])
        horizon = metadata["count_horizon"]
        detector.count_horizon_ = None if horizon is None else pd.Timedelta(horizon)
        detector.threshold_ = float(metadata["threshold"])
        detector.channel_scale_ = np.asarray(metadata["channel_scale"], dtype=np.float64)
        detector.scaler_ = RobustScaler.from_dict(_read_json(directory / "normalisation.json"))
        keys = (
            "format_version",
            "package_version",
            "services",
            "features",
            "count_horizon",
            "threshold",
            "channel_scale",
        )
        detector.metadata_ = {k: v for k, v in metadata.items() if k not in keys}
        detector._load_state(directory)
        return detector

    # ------------------------------------------------------------------------------------ hooks

    @abstractmethod
    def _fit_windows(self, train: Windows, val: Windows) -> None:
        """Learn from scaled training windows; ``val`` is for early stopping only."""

    @abstractmethod
    def _channel_errors(self, windows: Windows) -> np.ndarray:
        """``[N, S, F]`` non-negative reconstruction (or deviation) errors per window channel.

        Or ``[K, N, S, F]``: ``K`` components, each calibrated on its own (see :meth:`_aggregate`).
        """

    def _save_state(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Persist learned state beyond scaler/threshold; stateless detectors need nothing."""

    def _load_state(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Inverse of :meth:`_save_state`."""

    # ---------------------------------------------------------------------------------- helpers

    def _windows(self, data: ServiceTensor, stride: int) -> Windows:
        scaled = self.scaler_.transform(data.values)
        context = cyclic_time_features(data.timestamps)
        return make_windows(scaled, context, data.timestamps, self.window_size, stride)

    def _checked_errors(self, windows: Windows) -> np.ndarray:
        """``[K, N, S, F]`` errors (``K`` = 1 for a detector returning ``[N, S, F]``), checked."""
        errors = self._channel_errors(windows)
        if errors.ndim == 3:
            errors = errors[None]
        expected = (len(windows), windows.values.shape[2], windows.values.shape[3])
        if len(errors) != len(self.component_weights):
            raise DataValidationError(
                f"{self.kind}: {len(errors)} error components but "
                f"{len(self.component_weights)} component weights"
            )
        if errors.shape[1:] != expected or not np.all(np.isfinite(errors)):
            raise DataValidationError(
                f"{self.kind}: channel errors have shape {errors.shape} (expected {expected}) "
                "or contain non-finite values"
            )
        return errors

    def _scored_components(self, windows: Windows) -> np.ndarray:
        """The detector's checked error components, plus the deviation if it is weighted."""
        errors = self._checked_errors(windows)
        if not self.deviation_weight:
            return errors
        return np.concatenate([errors, windows.mean_squared_deviation()[None]])

    def _aggregate(
        self, errors: np.ndarray, windows: Windows
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated metric scores → service scores (max over features) → window scores.

        Each error component is divided by its own per-channel scale before the components are
        averaged (``component_weights``, then ``deviation_weight`` if set), so a component with
        large raw values cannot drown the others.
        """
        named = self.component_weights + ((self.deviation_weight,) if self.deviation_weight else ())
        weights = np.asarray(named) / sum(named)
        metric_scores = np.tensordot(weights, errors / self.channel_scale_[:, None], axes=1)
        return self._window_scores(metric_scores, windows), metric_scores.max(axis=2), metric_scores

    def _window_scores(self, metric_scores: np.ndarray, windows: Windows) -> np.ndarray:
        """``[N]`` window scores: the mean of the ``k`` largest metric scores (``k`` ≈ 10 %).

        A single broken metric still stands out, while one noisy channel alone does not.
        Detectors that score whole windows natively (Isolation Forest) override this.
        """
        flat = metric_scores.reshape(len(metric_scores), -1)
        k = max(1, math.ceil(0.1 * flat.shape[1]))
        return np.sort(flat, axis=1)[:, -k:].mean(axis=1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first")


def detector_kinds() -> list[str]:
    """Names of every registered detector kind."""
    return sorted(_REGISTRY)


def detector_class(kind: str) -> type[WindowDetector]:
    """The class registered under ``kind``."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise DataValidationError(f"unknown detector {kind!r}; known: {detector_kinds()}") from None


def _channel_scale(errors: np.ndarray, window_size: int) -> np.ndarray:
    """``[K, S, F]`` mean validation error per component and channel, with two floors.

    * a tenth of the median channel's scale, so a channel the model reconstructs almost exactly is
      judged in the units of a typical channel rather than divided by ~0;
    * ``1 / window_size``: the error of a single one-sigma blip in one step of a window. A series
      that never moved in training (e.g. no warning was ever logged) would otherwise turn its first
      harmless blip into a score in the hundreds.

    Each component gets its own floors (its own typical channel).
    """
    scale = errors.mean(axis=1)
    typical = np.median(scale.reshape(len(scale), -1), axis=1)
    floor = np.maximum(typical * 0.1, 1.0 / window_size)
    return np.maximum(scale, floor[:, None, None])


def _duration_text(value: pd.Timedelta | None) -> str | None:
    return None if value is None else str(value)


def _check_same_layout(reference: ServiceTensor, other: ServiceTensor, what: str) -> None:
    if reference.services != other.services or reference.features != other.features:
        raise DataValidationError(
            f"{what} has services {list(other.services)} / features {list(other.features)}, "
            f"training data has {list(reference.services)} / {list(reference.features)}"
        )
    if reference.count_horizon != other.count_horizon:
        raise DataValidationError(
            f"{what} counts events over {other.count_horizon}, training data over "
            f"{reference.count_horizon}"
        )


def _fingerprint(values: np.ndarray) -> str:
    """Short content hash of the training tensor, to tell which data a model came from."""
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:16]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelMismatchError(f"model directory is incomplete: {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ModelMismatchError(f"model file {path} is corrupt: {exc}") from None
