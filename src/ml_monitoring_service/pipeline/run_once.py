"""One-shot training and inference for a service set: what the CLI flags ``--run-once-*`` do."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from ml_monitoring_service.config import EnvironmentSettings, ServiceSetConfig
from ml_monitoring_service.data.sources import inference_data, training_data
from ml_monitoring_service.explain.narrative import narrator
from ml_monitoring_service.pipeline.inference import InferenceOutcome, score_variant
from ml_monitoring_service.pipeline.model_store import load_current, model_root
from ml_monitoring_service.pipeline.training import TrainingOutcome, train_variant
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.tracking import RunTracker

logger = logging.getLogger(__name__)


def run_training(
    config: ServiceSetConfig,
    env: EnvironmentSettings,
    variants: Sequence[Variant],
    now: pd.Timestamp,
    tracker: RunTracker,
) -> list[TrainingOutcome]:
    """Fetch the training period once and train one model per variant."""
    frame = training_data(config, now, env).frame
    logger.info(
        "[%s] training data: %d rows from %s to %s",
        config.name,
        len(frame),
        frame["timestamp"].min(),
        frame["timestamp"].max(),
    )
    outcomes = []
    for variant in variants:
        outcome = train_variant(config, frame, variant, env.output_dir)
        detector = outcome.detector
        tracker.log_training(
            config.name,
            variant.label,
            detector.get_params(),
            detector.epoch_losses_,
            {
                "threshold": detector.threshold_,
                "parameters": detector.parameter_count(),
                "best_epoch": detector.best_epoch_,
                "training_seconds": outcome.seconds,
            },
            outcome.version_dir,
        )
        outcomes.append(outcome)
    return outcomes


def run_inference(
    config: ServiceSetConfig,
    env: EnvironmentSettings,
    variants: Sequence[Variant],
    now: pd.Timestamp,
    tracker: RunTracker,
) -> list[InferenceOutcome]:
    """Score the inference period with each variant's current model (trained first if missing)."""
    models = {v: load_current(model_root(env.output_dir, config.name, v.name)) for v in variants}
    missing = [variant for variant, model in models.items() if model is None]
    if missing:
        logger.info(
            "[%s] no model yet for %s: training first", config.name, [v.label for v in missing]
        )
        for trained in run_training(config, env, missing, now, tracker):
            models[trained.variant] = (trained.detector, trained.version_dir.name)
    frame = inference_data(config, now, env).frame
    narrate = narrator(config.narrative, env.llm_api_key)
    outcomes = []
    for variant, model in models.items():
        detector, version = model  # type: ignore[misc]  # every variant has a model by now
        outcome = score_variant(config, frame, variant, detector, version, env.output_dir, narrate)
        tracker.log_inference(outcome.summary, outcome.files)
        outcomes.append(outcome)
    return outcomes
