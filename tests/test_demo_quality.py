"""Minimum detection and root-cause quality on the demo's labelled incidents.

Uses the shipped ``demo`` configuration (so it checks what users run), scoring a longer stretch
than the default so every incident kind appears at least once.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ml_monitoring_service.config import load_config
from ml_monitoring_service.data.sources import inference_data, training_data
from ml_monitoring_service.evaluation import LabelledSpan, detection_quality
from ml_monitoring_service.pipeline.training import (
    build_detector,
    chronological_split,
    count_horizon,
)
from ml_monitoring_service.prepare.densify import densify
from ml_monitoring_service.prepare.variants import Variant


@pytest.mark.slow
def test_demo_incidents_are_detected_and_attributed() -> None:
    base = load_config().service_set("demo")
    config = base.model_copy(
        update={
            "schedule": base.schedule.model_copy(update={"inference_lookback": pd.Timedelta("8h")})
        }
    )
    now = pd.Timestamp("2024-06-05T18:00:00Z")
    variant = Variant.parse("grid:30s")
    metrics = list(config.metrics)
    training = training_data(config, now).frame
    horizon = count_horizon(config, training)
    history = densify(training, config.services, metrics, variant, horizon)
    train, val = chronological_split(history, config.model.validation_fraction, 32)
    detector = build_detector(config, show_progress=False).fit(train, val)
    scored = inference_data(config, now)
    assert len(scored.incidents) >= 6
    result = detector.score(densify(scored.frame, config.services, metrics, variant, horizon))
    spans = [LabelledSpan(i.service, i.start, i.end) for i in scored.incidents]
    quality = detection_quality(result, spans, config.edges, scored.frame)
    assert quality.roc_auc >= 0.9
    assert quality.events_detected == quality.events
    assert quality.root_cause_top1 >= 0.9
