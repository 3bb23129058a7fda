"""What one service set does per scheduled tick: retrain (with promotion rules) and score.

:class:`SetRunner` owns the set's loaded models, its alert policy and the state file of that
policy. Jobs raise on failure; the scheduler wraps them so one set's failure is logged, counted
and never stops another set (see :mod:`~ml_monitoring_service.daemon.scheduler`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml_monitoring_service.alerts import (
    AlertPolicy,
    IncidentLink,
    Notification,
    Outbox,
    verdicts_from_scores,
)
from ml_monitoring_service.config import EnvironmentSettings, ServiceSetConfig
from ml_monitoring_service.daemon.demo_stream import DemoStream
from ml_monitoring_service.daemon.lifecycle import drop_excluded, judge, register_model
from ml_monitoring_service.daemon.metrics import DaemonMetrics
from ml_monitoring_service.data.sources import inference_data, training_data
from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.explain.narrative import narrator
from ml_monitoring_service.pipeline.inference import (
    InferenceOutcome,
    output_paths,
    score_variant,
)
from ml_monitoring_service.pipeline.model_store import (
    load_latest_good,
    model_root,
    promote,
    prune_versions,
    remove_stale_staging,
    save_rejected,
    save_version,
)
from ml_monitoring_service.pipeline.training import fit_candidate, log_saved
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.tracking import RunTracker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    detector: WindowDetector
    version: str


class SetRunner:
    """Training and inference of one service set, with its models and alert policy."""

    def __init__(
        self,
        config: ServiceSetConfig,
        env: EnvironmentSettings,
        variants: Sequence[Variant],
        metrics: DaemonMetrics,
        outbox: Outbox | None,
        tracker: RunTracker,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config, self.env, self.variants = config, env, tuple(variants)
        self.metrics, self.outbox, self.tracker = metrics, outbox, tracker
        self.stopping = stopping
        self.models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.state_path = env.output_dir / config.name / "alert_state.json"
        self.policy = _policy(config, self.state_path)
        self.demo_stream = DemoStream(config) if config.source == "demo" else None
        self.load_models()

    @property
    def name(self) -> str:
        return self.config.name

    def root(self, variant: Variant) -> Path:
        return model_root(self.env.output_dir, self.name, variant.name)

    def load_models(self) -> None:
        """Load each variant's current model (or the newest loadable one); clear crash debris."""
        for variant in self.variants:
            root = self.root(variant)
            if remove_stale_staging(root):
                logger.warning("[%s/%s] removed unfinished staging dirs", self.name, variant.label)
            loaded = load_latest_good(root, self.config.model.device)
            if loaded is not None:
                self.models[variant.name] = LoadedModel(*loaded)
            self.metrics.set_model(self.name, variant.name, loaded[1] if loaded else None)

    def missing(self) -> list[str]:
        """Variants without a loaded model (the set is not ready while any is missing)."""
        return [v.label for v in self.variants if v.name not in self.models]

    # ------------------------------------------------------------------------------- training

    def train(self, now: pd.Timestamp) -> None:
        """Fit a candidate per variant on the training lookback; promote or reject each."""
        frame = drop_excluded(
            training_data(self.config, now, self.env).frame,
            self.config.lifecycle.exclude,
        )
        for variant in self.variants:
            if self.stopping():
                logger.info(
                    "[%s] shutting down: training stopped before %s", self.name, variant.label
                )
                return
            self._train_variant(frame, variant)

    def _train_variant(self, frame: pd.DataFrame, variant: Variant) -> None:
        current = self.models.get(variant.name)
        candidate = fit_candidate(
            self.config,
            frame,
            variant,
            show_progress=False,
            current_horizon=current.detector.count_horizon_ if current else None,
        )
        verdict = judge(candidate, current.detector if current else None, self.config.lifecycle)
        root = self.root(variant)
        policy = self.config.lifecycle
        if not verdict.promote:
            kept = save_rejected(candidate.detector, root, verdict.detail, policy.keep_versions)
            self.metrics.promotion_rejections.labels(self.name, variant.name, verdict.reason).inc()
            logger.warning(
                "[%s/%s] candidate %s NOT promoted (%s): %s",
                self.name,
                variant.label,
                kept.name,
                verdict.reason,
                verdict.detail,
            )
            return
        version_dir = save_version(candidate.detector, root)
        promote(root, version_dir.name)
        prune_versions(root, policy.keep_versions)
        with self._lock:
            self.models[variant.name] = LoadedModel(candidate.detector, version_dir.name)
        self.metrics.set_model(self.name, variant.name, version_dir.name)
        log_saved(self.config, variant, candidate.detector, version_dir, candidate.seconds)
        logger.info(
            "[%s/%s] promoted (%s): %s", self.name, variant.label, verdict.reason, verdict.detail
        )
        self._track(variant, candidate.detector, version_dir, candidate.seconds)

    def _track(
        self, variant: Variant, detector: WindowDetector, version_dir: Path, seconds: float
    ) -> None:
        if not self.tracker.enabled:
            return
        summary = {"threshold": detector.threshold_, "training_seconds": seconds}
        losses = list(getattr(detector, "epoch_losses_", []))
        self.tracker.log_training(
            self.name, variant.label, detector.get_params(), losses, summary, version_dir
        )
        name = f"ml-monitoring-{self.name}-{variant.name}"
        register_model(self.tracker.tracking_uri, name, version_dir, version_dir.name)

    # ------------------------------------------------------------------------------ inference

    def infer(self, now: pd.Timestamp) -> list[Notification]:
        """Score the inference lookback with every loaded model; feed the alert policy."""
        with self._lock:
            models = {v: self.models.get(v.name) for v in self.variants}
        ready = {v: m for v, m in models.items() if m is not None}
        if not ready:
            logger.info("[%s] no model yet: waiting for the first training", self.name)
            return []
        if self.demo_stream is not None:
            frame = self.demo_stream.inference_data(now).frame
        else:
            frame = inference_data(self.config, now, self.env).frame
        notes: list[Notification] = []
        narrate = narrator(self.config.narrative, self.env.llm_api_key)
        for variant, model in ready.items():
            outcome = score_variant(
                self.config,
                frame,
                variant,
                model.detector,
                model.version,
                self.env.output_dir,
                narrate,
            )
            self.metrics.observe_scores(self.name, variant.name, outcome.result)
            report = str(output_paths(self.env.output_dir, self.name, variant)["summary"])
            verdicts = verdicts_from_scores(outcome.result)
            new = self.policy.observe(
                self.name, variant.name, verdicts, report=report, incidents=incident_links(outcome)
            )
            notes.extend(new)
            self._export_alerts(variant, new)
        if self.outbox is not None:
            self.outbox.put(notes)
        _write_state(self.state_path, self.policy.export_state())
        return notes

    def _export_alerts(self, variant: Variant, notes: Sequence[Notification]) -> None:
        active = any(
            a.labels.get("service_set") == self.name and a.labels.get("alert_key") == variant.name
            for a in self.policy.active()
        )
        self.metrics.alert_active.labels(self.name, variant.name).set(int(active))
        for note in notes:
            self.metrics.notifications.labels(self.name, variant.name, note.event).inc()
            if note.event != "update":
                log_notification(note)


def incident_links(outcome: InferenceOutcome) -> list[IncidentLink]:
    """Each anomalous period's time span and incident report path, for the alert annotations.

    Times are floored to microseconds like the window verdicts' ends, so a window end compares
    correctly with the period bounds.
    """
    return [
        IncidentLink(
            start=period.start.floor("us").to_pydatetime(),
            end=period.end.floor("us").to_pydatetime(),
            report=str(report),
        )
        for period, report in zip(outcome.periods, outcome.incident_reports, strict=True)
    ]


def log_notification(note: Notification) -> None:
    """One concise line per firing or resolve, naming the top service and metric (and the
    incident report, when the alert links one)."""
    labels, annotations = note.alert.labels, note.alert.annotations
    report = annotations.get("incident_report")
    logger.warning(
        "ALERT %s %s [%s/%s] %s/%s severity=%s: %s%s",
        note.event.upper(),
        labels.get("alertname"),
        labels.get("service_set"),
        labels.get("alert_key"),
        labels.get("service"),
        labels.get("metric"),
        labels.get("severity"),
        annotations.get("summary", ""),
        f" (incident report {report})" if report else "",
    )


def _policy(config: ServiceSetConfig, path: Path) -> AlertPolicy:
    """The set's alert policy, resumed from its state file when that is readable."""
    if path.exists():
        try:
            return AlertPolicy(config.alerting, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("alert state %s unusable (%s): starting with no active alerts", path, exc)
    return AlertPolicy(config.alerting)


def _write_state(path: Path, state: dict[str, object]) -> None:
    """Write through a temporary file and ``os.replace``: a crash leaves the old or new state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)
