"""The ``splunk+prometheus`` source: fetch, cache and combine into the canonical dataset.

Splunk says *when* each service did something (log events with a severity); Prometheus says what
its metrics were. ``collect.prometheus_mode`` picks how the two meet:

* ``event``: every metric is sampled at the service's event times (instant-query semantics), one
  row per log event. Cheap and aligned with activity, but blind while a service is silent.
* ``range``: metrics are sampled on a fixed ``step`` independent of the logs, and log events are
  added as their own rows (metric columns empty, forward-filled later by densification). Slow
  drifts and silent failures stay visible.

Raw downloads (events and metric samples, before combining) are cached per set, purpose and time
range under ``CACHE_DIR``; with ``DOWNLOAD=false`` the newest cached download for the purpose is
replayed instead, so a run can be repeated, debugged or benchmarked without the servers.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ml_monitoring_service.collectors.prometheus import PrometheusMetricSource
from ml_monitoring_service.collectors.resilience import CircuitBreaker, RetryPolicy
from ml_monitoring_service.collectors.splunk import SplunkEventSource
from ml_monitoring_service.config import EnvironmentSettings, ServiceSetConfig
from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    TIMESTAMP,
    TRACE_ID,
    validate_combined,
)
from ml_monitoring_service.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

Purpose = Literal["training", "inference"]
_EVENTS_FILE = "events.parquet"
_METRICS_FILE = "metrics.parquet"
_META_FILE = "download.json"

# One breaker per backend URL for the life of the process, so a daemon stops hammering a dead
# backend across jobs instead of rediscovering the outage on every tick.
_BREAKERS: dict[tuple[str, str], CircuitBreaker] = {}


@dataclass(frozen=True)
class RawDownload:
    """What the backends returned for one set, purpose and time range, before combining."""

    events: pd.DataFrame
    metrics: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    mode: str


def collect_combined(
    config: ServiceSetConfig,
    env: EnvironmentSettings,
    start: pd.Timestamp,
    end: pd.Timestamp,
    purpose: Purpose,
) -> pd.DataFrame:
    """The validated combined dataset of ``config``'s services over ``[start, end)``."""
    cache = env.cache_dir / config.name / purpose
    if env.download:
        raw = download(config, env, start, end)
        _write_cache(cache, raw)
    else:
        raw = _read_newest_cache(cache, config.name, purpose)
        logger.info(
            "[%s] DOWNLOAD=false: replaying the %s download of %s to %s from %s",
            config.name,
            purpose,
            raw.start,
            raw.end,
            cache,
        )
    return combine(raw, config)


def download(
    config: ServiceSetConfig, env: EnvironmentSettings, start: pd.Timestamp, end: pd.Timestamp
) -> RawDownload:
    """Query Splunk for events and Prometheus for metrics as the set's collect section says."""
    collect = config.collect
    splunk, prometheus = _clients(config, env)
    events = splunk.fetch_events(config.log_query, config.services, start, end)
    if collect.prometheus_mode == "event":
        times = {
            str(service): pd.DatetimeIndex(group[TIMESTAMP].unique())
            for service, group in events.groupby(SERVICE, sort=False)
        }
        metrics = prometheus.sample_at(config.metrics, config.services, times)
    else:
        metrics = prometheus.sample_range(config.metrics, config.services, start, end, collect.step)
    logger.info(
        "[%s] downloaded %d log events and %d metric rows (%s mode) for %s to %s",
        config.name,
        len(events),
        len(metrics),
        collect.prometheus_mode,
        start,
        end,
    )
    return RawDownload(events, metrics, start, end, collect.prometheus_mode)


def combine(raw: RawDownload, config: ServiceSetConfig) -> pd.DataFrame:
    """One timeline per service in the canonical combined layout.

    ``event`` downloads attach to each log event the metric values at its time; ``range``
    downloads interleave metric rows and event rows. Log text (``message``) and trace ids stay on
    event rows.
    Either way the result passes the same validation as every other source.
    """
    metrics = list(config.metrics)
    # Downloads cached before log text was collected have no message column.
    kept = [c for c in (TIMESTAMP, SERVICE, SEVERITY, MESSAGE, TRACE_ID) if c in raw.events.columns]
    events = raw.events[kept]
    if raw.mode == "event":
        values = raw.metrics.drop_duplicates([SERVICE, TIMESTAMP], keep="last")
        rows = events.merge(values, on=[SERVICE, TIMESTAMP], how="left")
    else:
        rows = pd.concat([raw.metrics, events], ignore_index=True)
    for metric in metrics:
        if metric not in rows.columns:
            rows[metric] = float("nan")
    # A service that logged nothing has no rows, which is not an error here: a silent service is
    # itself a symptom (its event_count drops to 0), and refusing the whole set would hide it.
    frame = validate_combined(rows, None, metrics)
    silent = [s for s in config.services if s not in set(frame[SERVICE])]
    if silent:
        logger.warning(
            "[%s] no observations of %s between %s and %s", config.name, silent, raw.start, raw.end
        )
    return frame[frame[SERVICE].isin(config.services)].reset_index(drop=True)


def _clients(
    config: ServiceSetConfig, env: EnvironmentSettings
) -> tuple[SplunkEventSource, PrometheusMetricSource]:
    missing = [
        name
        for name, value in (("SPLUNK_URL", env.splunk_url), ("PROMETHEUS_URL", env.prometheus_url))
        if value is None
    ]
    if env.splunk_token is None and env.splunk_username is None:
        missing.append("SPLUNK_TOKEN (or SPLUNK_USERNAME and SPLUNK_PASSWORD)")
    if missing:
        raise ConfigError(
            f"service set {config.name!r} uses source 'splunk+prometheus' but these environment "
            f"settings are not set: {', '.join(missing)}"
        )
    assert env.splunk_url is not None and env.prometheus_url is not None
    collect = config.collect
    timeout_s = collect.timeout.total_seconds()
    policy = RetryPolicy(attempts=collect.attempts, backoff_s=collect.backoff.total_seconds())
    splunk = SplunkEventSource(
        env.splunk_url,
        token=env.splunk_token,
        username=env.splunk_username,
        password=env.splunk_password,
        verify=env.requests_verify,
        timeout_s=timeout_s,
        retry=policy,
        breaker=_breaker("splunk", env.splunk_url, config),
    )
    prometheus = PrometheusMetricSource(
        env.prometheus_url,
        token=env.prometheus_token,
        verify=env.requests_verify,
        timeout_s=timeout_s,
        retry=policy,
        breaker=_breaker("prometheus", env.prometheus_url, config),
    )
    return splunk, prometheus


def _breaker(backend: str, url: str, config: ServiceSetConfig) -> CircuitBreaker:
    key = (backend, url)
    if key not in _BREAKERS:
        _BREAKERS[key] = CircuitBreaker(
            backend,
            failure_threshold=config.collect.breaker_failures,
            reset_after_s=config.collect.breaker_reset.total_seconds(),
        )
    return _BREAKERS[key]


def _range_label(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """Directory name of a range; sorts chronologically by end then start."""
    return f"{end:%Y%m%dT%H%M%S}Z--{start:%Y%m%dT%H%M%S}Z"


def _write_cache(cache: Path, raw: RawDownload) -> None:
    """Write the download to its own directory atomically: a crash never leaves half a cache."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / _range_label(raw.start, raw.end)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache))
    try:
        raw.events.to_parquet(staging / _EVENTS_FILE, index=False)
        raw.metrics.to_parquet(staging / _METRICS_FILE, index=False)
        meta = {"start": raw.start.isoformat(), "end": raw.end.isoformat(), "mode": raw.mode}
        (staging / _META_FILE).write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_newest_cache(cache: Path, set_name: str, purpose: Purpose) -> RawDownload:
    complete = sorted(p for p in cache.glob("*--*") if (p / _META_FILE).is_file())
    if not complete:
        raise DataValidationError(
            f"DOWNLOAD=false but no cached {purpose} download of set {set_name!r} under "
            f"{str(cache)!r}; run once with DOWNLOAD=true while the backends are reachable"
        )
    newest = complete[-1]
    meta = json.loads((newest / _META_FILE).read_text())
    return RawDownload(
        events=pd.read_parquet(newest / _EVENTS_FILE),
        metrics=pd.read_parquet(newest / _METRICS_FILE),
        start=pd.Timestamp(meta["start"]),
        end=pd.Timestamp(meta["end"]),
        mode=meta["mode"],
    )
