"""Fetch the combined dataset for a service set's training or inference period.

One function per purpose so the pipeline never needs to know which backend a set uses. Time ranges
are anchored at ``now`` (UTC): training covers the ``training_lookback`` that ends where the
inference lookback begins, so the two never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml_monitoring_service.config import REPO_ROOT, ServiceSetConfig
from ml_monitoring_service.data.demo import Incident, generate_demo
from ml_monitoring_service.data.readers import read_combined
from ml_monitoring_service.errors import ConfigError


@dataclass(frozen=True)
class SourceData:
    """A combined dataset plus the incidents known to be in it (only the demo knows them)."""

    frame: pd.DataFrame
    incidents: tuple[Incident, ...] = ()


def training_data(config: ServiceSetConfig, now: pd.Timestamp) -> SourceData:
    """Data to learn normal behaviour from (the demo produces a clean period)."""
    end = now - config.schedule.inference_lookback
    return _fetch(config, end - config.schedule.training_lookback, end, training=True)


def inference_data(config: ServiceSetConfig, now: pd.Timestamp) -> SourceData:
    """Data to score: the last ``inference_lookback`` before ``now``."""
    return _fetch(config, now - config.schedule.inference_lookback, now, training=False)


def _fetch(
    config: ServiceSetConfig, start: pd.Timestamp, end: pd.Timestamp, *, training: bool
) -> SourceData:
    if config.source == "demo":
        demo = generate_demo(
            start,
            end,
            seed=config.demo.seed,
            services=config.services,
            edges=config.edges,
            incident_every=None if training else config.demo.incident_every,
            event_rate_per_min=config.demo.event_rate_per_min,
        )
        return SourceData(demo.frame, demo.incidents)
    if config.source == "file" and config.file is not None:
        path = config.file.training_path if training else config.file.inference_path
        path = path if path.is_absolute() else REPO_ROOT / path
        return SourceData(read_combined(path, list(config.metrics), config.services))
    raise ConfigError(
        f"service set {config.name!r}: source {config.source!r} is not available in this version; "
        "use 'demo' or 'file'"
    )
