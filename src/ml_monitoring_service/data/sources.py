"""Fetch the combined dataset for a service set's training or inference period.

One function per purpose so the pipeline never needs to know which backend a set uses. Time ranges
are anchored at ``now`` (UTC): training covers the ``training_lookback`` that ends where the
inference lookback begins, so the two never overlap. Recordings (``file``) are fixed in time and
ignore ``now``: their paths and optional ranges say which stretch trains and which is scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml_monitoring_service.collectors.live import collect_combined
from ml_monitoring_service.config import (
    REPO_ROOT,
    EnvironmentSettings,
    FileSourceConfig,
    ServiceSetConfig,
)
from ml_monitoring_service.data.demo import Incident, generate_demo
from ml_monitoring_service.data.pod_recordings import read_pod_recording
from ml_monitoring_service.data.readers import read_combined
from ml_monitoring_service.data.schema import TIMESTAMP
from ml_monitoring_service.errors import ConfigError, DataValidationError


@dataclass(frozen=True)
class SourceData:
    """A combined dataset plus the incidents known to be in it (only the demo knows them)."""

    frame: pd.DataFrame
    incidents: tuple[Incident, ...] = ()


def training_data(
    config: ServiceSetConfig, now: pd.Timestamp, env: EnvironmentSettings | None = None
) -> SourceData:
    """Data to learn normal behaviour from (the demo produces a clean period)."""
    end = now - config.schedule.inference_lookback
    return _fetch(config, env, end - config.schedule.training_lookback, end, training=True)


def inference_data(
    config: ServiceSetConfig, now: pd.Timestamp, env: EnvironmentSettings | None = None
) -> SourceData:
    """Data to score: the last ``inference_lookback`` before ``now``."""
    return _fetch(config, env, now - config.schedule.inference_lookback, now, training=False)


def _fetch(
    config: ServiceSetConfig,
    env: EnvironmentSettings | None,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    training: bool,
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
        return SourceData(_replay(config, config.file, training=training))
    if env is None:
        raise ConfigError(
            f"service set {config.name!r}: source {config.source!r} needs environment settings "
            "(backend URLs and credentials)"
        )
    return SourceData(
        collect_combined(config, env, start, end, "training" if training else "inference")
    )


def _replay(config: ServiceSetConfig, source: FileSourceConfig, *, training: bool) -> pd.DataFrame:
    """Read the recording for this purpose, cut to its configured time range if one is set."""
    path = source.training_path if training else source.inference_path
    path = path if path.is_absolute() else REPO_ROOT / path
    time_range = source.training_range if training else source.inference_range
    start, end = time_range if time_range is not None else (None, None)
    if source.format == "pod_recording":
        return read_pod_recording(
            path, config.services, config.metrics, start, end, logs=source.logs
        )
    frame = read_combined(path, list(config.metrics), config.services)
    if time_range is None:
        return frame
    inside = frame[(frame[TIMESTAMP] >= start) & (frame[TIMESTAMP] < end)]
    if inside.empty:
        raise DataValidationError(
            f"{str(path)!r} has no rows in [{start}, {end}) (it covers "
            f"{frame[TIMESTAMP].min()} to {frame[TIMESTAMP].max()})"
        )
    return inside.reset_index(drop=True)
