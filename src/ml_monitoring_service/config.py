"""Typed configuration, loaded and validated once at start-up.

Two sources, kept apart on purpose:

* ``config/service_sets.yaml`` describes *what* to monitor (services, call graph, metrics, windows,
  schedules). It is versioned with the deployment and may be reviewed by anyone.
* The environment (and an optional ``.env`` file) says *where* the backends are and holds secrets.
  Secrets are ``SecretStr`` so they never appear in logs, reprs or tracebacks.

Every error names the file, the key path and the reason, and unknown keys are rejected by name so a
typo cannot silently fall back to a default.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ml_monitoring_service.alerts.policy import AlertPolicyConfig
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.metric_roles import MetricRoles

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "service_sets.yaml"
DEFAULT_SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


def _parse_duration(value: Any) -> pd.Timedelta:
    """Accept '30s', '5min', '24h', '2d' or a number of seconds; reject zero and negatives."""
    try:
        delta = pd.Timedelta(value) if isinstance(value, str) else pd.Timedelta(seconds=value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a duration: {value!r} (use e.g. '30s', '5min', '24h')") from exc
    if delta <= pd.Timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return delta


Duration = Annotated[pd.Timedelta, BeforeValidator(_parse_duration)]


class _Strict(BaseModel):
    """Base for config sections: unknown keys are errors, values are immutable after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class PreprocessingConfig(_Strict):
    """How raw observations become model windows."""

    window_size: int = Field(32, ge=4, le=4096)
    train_stride: int = Field(4, ge=1)
    score_stride: int = Field(1, ge=1)
    # ``auto`` (None): fitted to the training data's event rate (``prepare.densify``).
    count_horizon: Duration | None = None
    variants: tuple[str, ...] = ("event", "grid:30s")

    @field_validator("count_horizon", mode="before")
    @classmethod
    def _auto_horizon(cls, value: Any) -> Any:
        return None if value == "auto" else value

    @field_validator("variants")
    @classmethod
    def _variants_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from ml_monitoring_service.prepare.variants import Variant

        for item in value:
            Variant.parse(item)
        return value


class ModelConfig(_Strict):
    """Network size and training schedule of the transformer autoencoder."""

    d_model: int = Field(32, ge=8)
    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(1, ge=1)
    latent_dim: int = Field(8, ge=1)
    temporal_pool: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    input_noise: float = Field(0.1, ge=0.0)
    max_epochs: int = Field(30, ge=1)
    windows_per_epoch: int = Field(1024, ge=1)
    patience: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        return self


class DetectionConfig(_Strict):
    """Turns scores into alerts."""

    threshold_percentile: float = Field(99.0, gt=50.0, lt=100.0)


class ScheduleConfig(_Strict):
    """How often the daemon retrains and scores, and how much history each job reads."""

    training_interval: Duration = pd.Timedelta("24h")
    inference_interval: Duration = pd.Timedelta("5min")
    training_lookback: Duration = pd.Timedelta("6h")
    inference_lookback: Duration = pd.Timedelta("2h")


class DemoSourceConfig(_Strict):
    """The embedded generator: stands in for Splunk + Prometheus."""

    seed: int = 7
    incident_every: Duration = pd.Timedelta("40min")
    event_rate_per_min: float = Field(6.0, gt=0)


def _expand_path(value: Any) -> Path:
    """Expand ``$VAR``/``${VAR}`` from the environment; ``SHARED_DATA_DIR`` has a default.

    Recordings live outside the repository (``../shared/data`` beside it by default), and a
    deployment moves them by setting one variable instead of editing every path.
    """
    defaults = {"SHARED_DATA_DIR": str(DEFAULT_SHARED_DATA_DIR)}
    text = string.Template(str(value)).safe_substitute({**defaults, **os.environ})
    return Path(text)


ExpandedPath = Annotated[Path, BeforeValidator(_expand_path)]


def _parse_time_range(value: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[start, end]`` as two timestamps (naive ones are UTC); start must precede end."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"expected [start, end], got {value!r}")
    try:
        start, end = (pd.Timestamp(v) for v in value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a timestamp in {value!r}: {exc}") from exc
    start, end = (
        t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC") for t in (start, end)
    )
    if start >= end:
        raise ValueError(f"start {start} is not before end {end}")
    return start, end


TimeRange = Annotated[tuple[pd.Timestamp, pd.Timestamp], BeforeValidator(_parse_time_range)]


class FileSourceConfig(_Strict):
    """Recorded data replayed from disk; relative paths are relative to the repository root.

    ``format: combined`` reads one canonical combined-dataset file per purpose;
    ``format: pod_recording`` reads a directory of per-pod metric CSVs and log CSVs (the Nezha
    layout), where each entry of the set's ``metrics`` names the source column. The optional
    ranges cut a stretch out of a recording, so one long recording can supply both a fault-free
    training period and a scored period.
    """

    format: Literal["combined", "pod_recording"] = "combined"
    training_path: ExpandedPath
    inference_path: ExpandedPath
    training_range: TimeRange | None = None
    inference_range: TimeRange | None = None
    # pod_recording only: read the log CSVs too. Off where logs were kept only around faults (as in
    # Nezha), because then their mere presence gives the faults away.
    logs: bool = True


class CollectorConfig(_Strict):
    """How the ``splunk+prometheus`` source queries its backends.

    ``prometheus_mode: event`` samples every metric at the Splunk event times (instant-query
    semantics); ``range`` samples on a fixed ``step`` regardless of logs, so slow drifts and
    silent failures are seen even when no service logs.
    """

    prometheus_mode: Literal["event", "range"] = "event"
    step: Duration = pd.Timedelta("30s")
    timeout: Duration = pd.Timedelta("30s")
    attempts: int = Field(3, ge=1, le=10)
    backoff: Duration = pd.Timedelta("1s")
    breaker_failures: int = Field(5, ge=1)
    breaker_reset: Duration = pd.Timedelta("60s")


class LifecycleConfig(_Strict):
    """How the daemon promotes retrained models (see ``daemon/lifecycle.py``).

    A candidate becomes current only when its training data looked normal to the current model
    (anomalous-window rate at most ``max_training_anomaly_rate``) and its mean reconstruction
    error on its own validation data is at most ``1 + validation_tolerance`` times the current
    model's on the same data. ``exclude`` lists declared maintenance/incident windows (UTC
    ``[start, end]``) whose rows are dropped from training data. The newest ``keep_versions``
    promoted versions (and as many rejected ones, under ``rejected/``) are kept on disk.
    """

    keep_versions: int = Field(3, ge=1)
    max_training_anomaly_rate: float = Field(0.05, ge=0.0, le=1.0)
    validation_tolerance: float = Field(0.25, ge=0.0)
    exclude: tuple[TimeRange, ...] = ()


def _check_http_url(value: str | None) -> str | None:
    """A URL we may send requests to: ``http://`` or ``https://``, no credentials inside it.

    Credentials belong in the environment (``SecretStr``), where they are never printed; a URL is
    logged with every failure.
    """
    if value is None:
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    if "@" in value.split("/", 3)[2]:
        raise ValueError("must not contain credentials (user:password@); use the environment")
    return value


class NarrativeConfig(_Strict):
    """The optional LLM narrative of an incident (``explain/narrative.py``); off by default.

    ``url`` is the base URL of an OpenAI-compatible API (requests go to ``{url}/chat/completions``),
    ``model`` the model name it serves. Only masked metadata is sent; ``mask_patterns`` are extra
    regular expressions (e.g. customer or account number formats) replaced by ``<MASKED>`` on top
    of the built-in masks. The API key comes from ``LLM_API_KEY`` in the environment, never from
    this file.
    """

    enabled: bool = False
    url: str | None = None
    model: str | None = None
    timeout_s: float = Field(30.0, gt=0.0, le=600.0)
    max_tokens: int = Field(800, ge=64, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    mask_patterns: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        checked = _check_http_url(value)
        return checked.rstrip("/") if checked is not None else None

    @field_validator("mask_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"mask pattern {pattern!r} is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> NarrativeConfig:
        missing = [key for key in ("url", "model") if self.enabled and not getattr(self, key)]
        if missing:
            raise ValueError(f"enabled: true needs {' and '.join(missing)}")
        return self


class ServiceSetConfig(_Strict):
    """One named set of interacting services, monitored and modelled together."""

    name: str = ""
    source: Literal["demo", "file", "splunk+prometheus"]
    services: tuple[str, ...] = Field(min_length=1)
    relationships: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    metrics: dict[str, str] = Field(min_length=1)
    # Metrics a service records about its own calls to callees (client-side latency): when one of
    # them is a service's most anomalous metric, a callee deviating as early explains it.
    client_metrics: tuple[str, ...] = ()
    # Metrics that count requests or bytes (request rate, network in/out): they move in every
    # service that shares a caller with the culprit, so the root-cause ranking weighs them down.
    traffic_metrics: tuple[str, ...] = ()
    log_query: str = ""
    demo: DemoSourceConfig = DemoSourceConfig()
    file: FileSourceConfig | None = None
    collect: CollectorConfig = CollectorConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    model: ModelConfig = ModelConfig()
    detection: DetectionConfig = DetectionConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    alerting: AlertPolicyConfig = AlertPolicyConfig()
    narrative: NarrativeConfig = NarrativeConfig()

    @field_validator("services")
    @classmethod
    def _unique_services(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({s for s in value if value.count(s) > 1})
        if duplicates:
            raise ValueError(f"duplicate services: {duplicates}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSetConfig:
        known = set(self.services)
        for caller, callees in self.relationships.items():
            unknown = sorted(({caller} | set(callees)) - known)
            if unknown:
                raise ValueError(
                    f"relationships name services not in 'services': {unknown} "
                    f"(services: {list(self.services)})"
                )
        for role, named in (
            ("client_metrics", self.client_metrics),
            ("traffic_metrics", self.traffic_metrics),
        ):
            unknown_metrics = sorted(set(named) - set(self.metrics))
            if unknown_metrics:
                raise ValueError(
                    f"{role} names metrics not in 'metrics': {unknown_metrics} "
                    f"(metrics: {list(self.metrics)})"
                )
        if self.source == "file" and self.file is None:
            raise ValueError(
                "source 'file' needs a 'file' section with training_path and inference_path"
            )
        if self.source == "splunk+prometheus" and "$service" not in self.log_query:
            raise ValueError(
                "source 'splunk+prometheus' needs a 'log_query' containing $service "
                "(the Splunk search run once per service)"
            )
        return self

    @property
    def metric_roles(self) -> MetricRoles:
        """What the client-side and traffic metrics are, for the root-cause ranking."""
        return MetricRoles(client=self.client_metrics, traffic=self.traffic_metrics)

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """Call graph as (caller, callee) pairs."""
        return tuple((c, d) for c, callees in self.relationships.items() for d in callees)


class EnvironmentSettings(_Strict):
    """Where things are and the secrets to reach them; from the environment or ``.env``."""

    output_dir: Path = REPO_ROOT / "output"
    mlflow_tracking_uri: str = f"sqlite:///{REPO_ROOT / 'mlruns' / 'mlflow.db'}"
    splunk_url: str | None = None
    splunk_token: SecretStr | None = None
    splunk_username: str | None = None
    splunk_password: SecretStr | None = None
    prometheus_url: str | None = None
    prometheus_token: SecretStr | None = None
    # TLS verification of both backends: true (default), false, or the path of a CA bundle.
    requests_verify: bool | Path = True
    # false: replay raw downloads cached under cache_dir instead of querying the backends.
    download: bool = True
    cache_dir: Path = REPO_ROOT / "output" / "cache"
    # Daemon: where /health, /ready and /metrics are served.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9900, ge=0, le=65535)
    # Daemon alert delivery; with neither URL set, alerts are only logged.
    alertmanager_url: str | None = None
    alert_webhook_url: str | None = None
    alert_outbox_dir: Path | None = None  # default: <output_dir>/alerts/outbox
    # Bearer token of the LLM narrative's API (config: narrative); none for a local server.
    llm_api_key: SecretStr | None = None

    @field_validator("splunk_url", "prometheus_url", "alertmanager_url", "alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _check_http_url(value)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None
    ) -> EnvironmentSettings:
        """Read ``OUTPUT_DIR``, ``MLFLOW_TRACKING_URI``, ``SPLUNK_*``, ``PROMETHEUS_*``,
        ``REQUESTS_VERIFY``, ``DOWNLOAD``, ``CACHE_DIR``, ``METRICS_HOST``, ``METRICS_PORT``,
        ``ALERTMANAGER_URL``, ``ALERT_WEBHOOK_URL``, ``ALERT_OUTBOX_DIR`` and ``LLM_API_KEY``.

        Real environment variables win over ``.env``, so a deployment can override a
        checked-out file.
        """
        dotenv_file = dotenv_path if dotenv_path is not None else REPO_ROOT / ".env"
        merged: dict[str, str] = (
            {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
            if dotenv_file.exists()
            else {}
        )
        merged.update(os.environ if environ is None else environ)
        values = {
            field: merged[field.upper()]
            for field in cls.model_fields
            if field.upper() in merged and merged[field.upper()] != ""
        }
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid environment setting: {_describe(exc)}") from None

    @property
    def outbox_dir(self) -> Path:
        """``ALERT_OUTBOX_DIR``, or ``<output_dir>/alerts/outbox``."""
        return self.alert_outbox_dir or self.output_dir / "alerts" / "outbox"


class AppConfig(_Strict):
    """Everything loaded from ``config/service_sets.yaml``."""

    service_sets: dict[str, ServiceSetConfig] = Field(min_length=1)

    def service_set(self, name: str) -> ServiceSetConfig:
        """The named set, or an error listing the sets that exist."""
        try:
            return self.service_sets[name]
        except KeyError:
            raise ConfigError(
                f"unknown service set {name!r}; configured sets: {sorted(self.service_sets)}"
            ) from None


def _describe(exc: ValidationError) -> str:
    """One line per problem: dotted key path and pydantic's reason."""
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        lines.append(f"{path}: {error['msg']}")
    return "; ".join(lines)


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> AppConfig:
    """Parse and validate the service-set file; every failure names the file and key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping with a 'service_sets' key")
    sets = raw.get("service_sets")
    if isinstance(sets, dict):
        raw["service_sets"] = {
            name: {**body, "name": name} if isinstance(body, dict) else body
            for name, body in sets.items()
        }
    try:
        return AppConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
