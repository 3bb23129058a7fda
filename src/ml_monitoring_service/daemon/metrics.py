"""Prometheus metrics of the daemon, in a registry of its own (style note 7).

Every name starts with ``ml_monitoring_`` and labels come from a small fixed set
(``service_set``, ``variant``, ``service``, ``metric``, plus ``job``/``kind``/``reason``/``event``
with a handful of values each), so the series count is bounded by the configuration. A dedicated
:class:`~prometheus_client.CollectorRegistry` lets tests run several daemons in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import generate_latest

from ml_monitoring_service.detectors.base import ScoreResult

SET, VARIANT = "service_set", "variant"


class DaemonMetrics:
    """All series the daemon exports; :meth:`exposition` renders them for ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.service_score = Gauge(
            "ml_monitoring_service_score",
            "Latest window's score per service (higher = more anomalous; 1 = typical validation)",
            [SET, VARIANT, "service"],
            registry=r,
        )
        self.metric_score = Gauge(
            "ml_monitoring_metric_score",
            "Latest window's calibrated score per service and metric",
            [SET, VARIANT, "service", "metric"],
            registry=r,
        )
        self.window_score = Gauge(
            "ml_monitoring_window_score", "Latest window score", [SET, VARIANT], registry=r
        )
        self.threshold = Gauge(
            "ml_monitoring_threshold",
            "Window-score threshold of the current model",
            [SET, VARIANT],
            registry=r,
        )
        self.anomalous_windows = Gauge(
            "ml_monitoring_anomalous_windows",
            "Anomalous windows in the last inference lookback",
            [SET, VARIANT],
            registry=r,
        )
        self.alert_active = Gauge(
            "ml_monitoring_alert_active", "1 while an alert is firing", [SET, VARIANT], registry=r
        )
        self.notifications = Counter(
            "ml_monitoring_alert_notifications",
            "Alert notifications produced by the policy",
            [SET, VARIANT, "event"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "ml_monitoring_alert_outbox_pending",
            "Notifications waiting in the outbox",
            registry=r,
        )
        self.delivery_failures = Counter(
            "ml_monitoring_alert_delivery_failures",
            "Outbox flushes that left a receiver failing",
            registry=r,
        )
        self.last_success = Gauge(
            "ml_monitoring_last_success_timestamp_seconds",
            "Unix time of the last successful job",
            [SET, "job"],
            registry=r,
        )
        self.job_duration = Histogram(
            "ml_monitoring_job_duration_seconds",
            "Wall time of jobs, successful or not",
            [SET, "job"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=r,
        )
        self.job_failures = Counter(
            "ml_monitoring_job_failures",
            "Jobs that raised; kind: backend (Splunk/Prometheus), data, internal",
            [SET, "job", "kind"],
            registry=r,
        )
        self.promotion_rejections = Counter(
            "ml_monitoring_promotion_rejections",
            "Retrained candidates refused promotion",
            [SET, VARIANT, "reason"],
            registry=r,
        )
        self.model_loaded = Gauge(
            "ml_monitoring_model_loaded",
            "1 when a model is loaded for the set and variant",
            [SET, VARIANT],
            registry=r,
        )
        self.model = Info(
            "ml_monitoring_model", "Version of the current model", [SET, VARIANT], registry=r
        )

    def observe_scores(self, set_name: str, variant: str, result: ScoreResult) -> None:
        """Export the newest window of ``result`` (gauges show the latest state)."""
        if len(result.window_scores) == 0:
            return
        self.window_score.labels(set_name, variant).set(float(result.window_scores[-1]))
        self.threshold.labels(set_name, variant).set(result.threshold)
        self.anomalous_windows.labels(set_name, variant).set(int(result.is_anomalous.sum()))
        for s, service in enumerate(result.services):
            self.service_score.labels(set_name, variant, service).set(
                float(result.service_scores[-1, s])
            )
            for f, metric in enumerate(result.features):
                self.metric_score.labels(set_name, variant, service, metric).set(
                    float(result.metric_scores[-1, s, f])
                )

    def set_model(self, set_name: str, variant: str, version: str | None) -> None:
        """Record which model version serves ``set_name``/``variant`` (``None``: none loaded)."""
        self.model_loaded.labels(set_name, variant).set(0 if version is None else 1)
        if version is not None:
            self.model.labels(set_name, variant).info({"version": version})

    def exposition(self) -> bytes:
        """The text format served on ``/metrics``."""
        return generate_latest(self.registry)


def exported_names(metrics: DaemonMetrics) -> set[str]:
    """Every sample name the registry can emit (``_total``, ``_bucket``, ``_info``… included)."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.update({family.name + "_total", family.name + "_created"})
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count", "_created"))
        elif family.type == "info":
            names.add(family.name + "_info")
    return names
