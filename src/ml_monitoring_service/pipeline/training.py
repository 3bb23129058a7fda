"""Train one service set's detector for one preprocessing variant and store it as a new version."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_monitoring_service.config import ServiceSetConfig
from ml_monitoring_service.detectors.transformer import TransformerAutoencoderDetector
from ml_monitoring_service.errors import InsufficientDataError
from ml_monitoring_service.pipeline.model_store import model_root, save_new_version
from ml_monitoring_service.prepare.densify import ServiceTensor, densify, fit_count_horizon
from ml_monitoring_service.prepare.variants import Variant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    """What one training run produced, for logging and tracking."""

    variant: Variant
    detector: TransformerAutoencoderDetector
    version_dir: Path
    seconds: float


def build_detector(
    config: ServiceSetConfig, *, show_progress: bool = True
) -> TransformerAutoencoderDetector:
    """The set's detector with every hyper-parameter taken from its validated configuration."""
    model = config.model
    return TransformerAutoencoderDetector(
        window_size=config.preprocessing.window_size,
        train_stride=config.preprocessing.train_stride,
        score_stride=config.preprocessing.score_stride,
        threshold_percentile=config.detection.threshold_percentile,
        d_model=model.d_model,
        n_heads=model.n_heads,
        n_layers=model.n_layers,
        latent_dim=model.latent_dim,
        temporal_pool=model.temporal_pool,
        dropout=model.dropout,
        input_noise=model.input_noise,
        max_epochs=model.max_epochs,
        windows_per_epoch=model.windows_per_epoch,
        patience=model.patience,
        batch_size=model.batch_size,
        learning_rate=model.learning_rate,
        device=model.device,
        seed=model.seed,
        show_progress=show_progress,
    )


def chronological_split(
    tensor: ServiceTensor, validation_fraction: float, window_size: int
) -> tuple[ServiceTensor, ServiceTensor]:
    """Earlier steps train, the latest ``validation_fraction`` validate (no shuffle across time)."""
    n_val = int(round(tensor.n_steps * validation_fraction))
    if n_val < window_size or tensor.n_steps - n_val < window_size:
        raise InsufficientDataError(
            f"{tensor.n_steps} time steps cannot be split into training and validation parts of "
            f"at least one window ({window_size} steps) each; use a longer training lookback, a "
            "finer grid or a smaller window_size"
        )
    cut = tensor.n_steps - n_val
    return tensor.slice(0, cut), tensor.slice(cut, tensor.n_steps)


@dataclass(frozen=True)
class Candidate:
    """A freshly fitted detector, not yet saved, with the data it was trained and validated on."""

    variant: Variant
    detector: TransformerAutoencoderDetector
    train: ServiceTensor
    val: ServiceTensor
    seconds: float


def count_horizon(
    config: ServiceSetConfig,
    training_frame: pd.DataFrame,
    current: pd.Timedelta | None = None,
) -> pd.Timedelta:
    """The configured ``count_horizon``; under ``auto``, the ``current`` model's horizon when there
    is one, else one fitted to the training data.

    A retrained candidate keeps the current model's horizon so the promotion gate can score the
    new training data with the current model: a horizon refitted on data with an outage in it
    would otherwise change the layout, and a layout change skips the gate.
    """
    return (
        config.preprocessing.count_horizon
        or current
        or fit_count_horizon(training_frame, config.services)
    )


def fit_candidate(
    config: ServiceSetConfig,
    frame: pd.DataFrame,
    variant: Variant,
    *,
    show_progress: bool = True,
    current_horizon: pd.Timedelta | None = None,
) -> Candidate:
    """Densify ``frame`` and fit the detector on its earlier part, validating on the latest;
    ``current_horizon`` is the count horizon of the model the candidate would replace."""
    started = time.perf_counter()
    horizon = count_horizon(config, frame, current_horizon)
    tensor = densify(frame, config.services, list(config.metrics), variant, horizon)
    train, val = chronological_split(
        tensor, config.model.validation_fraction, config.preprocessing.window_size
    )
    logger.info(
        "[%s/%s] training on %d steps, validating on %d steps",
        config.name,
        variant.label,
        train.n_steps,
        val.n_steps,
    )
    detector = build_detector(config, show_progress=show_progress).fit(train, val)
    return Candidate(variant, detector, train, val, time.perf_counter() - started)


def train_variant(
    config: ServiceSetConfig,
    frame: pd.DataFrame,
    variant: Variant,
    output_dir: Path,
    *,
    show_progress: bool = True,
) -> TrainingOutcome:
    """Densify ``frame``, fit the detector, store it as the set's current model for ``variant``."""
    started = time.perf_counter()
    detector = fit_candidate(config, frame, variant, show_progress=show_progress).detector
    version_dir = save_new_version(detector, model_root(output_dir, config.name, variant.name))
    seconds = time.perf_counter() - started
    log_saved(config, variant, detector, version_dir, seconds)
    return TrainingOutcome(variant, detector, version_dir, seconds)


def log_saved(
    config: ServiceSetConfig,
    variant: Variant,
    detector: TransformerAutoencoderDetector,
    version_dir: Path,
    seconds: float,
) -> None:
    """One line per stored model: size, best epoch, threshold, time taken and where it trained
    (``device: auto`` picks the GPU silently; the log says which)."""
    logger.info(
        "[%s/%s] model %s saved: %d parameters, best epoch %d/%d, threshold %.4g, %.1f s on %s",
        config.name,
        variant.label,
        version_dir.name,
        detector.parameter_count(),
        detector.best_epoch_,
        len(detector.epoch_losses_),
        detector.threshold_,
        seconds,
        detector.device_,
    )
