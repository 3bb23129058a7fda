"""The daemon: one APScheduler job per set and purpose, an outbox flush job, the status server.

Schedule, built once from the configuration at start-up:

* ``train:<set>`` every ``schedule.training_interval``; runs at once when a variant has no model,
  and then triggers the set's first inference;
* ``infer:<set>`` every ``schedule.inference_interval``;
* ``flush-alerts`` every ``flush_interval`` (30 s): delivers what an earlier flush could not.

All jobs use ``max_instances=1`` (a slow run is never doubled), ``coalesce=True`` (missed runs
collapse into one) and a ``misfire_grace_time`` of half the interval. Each job catches its own
exception, logs it with the set's name and counts it in ``ml_monitoring_job_failures_total``:
one set's failure never stops another.

Shutdown (SIGTERM/SIGINT, or :meth:`Daemon.stop`): a stopping flag makes jobs that start from now
on return at once, every job is removed (APScheduler 3.11's ``shutdown()`` runs one more
``_process_jobs()`` pass, which would otherwise submit a due job to the stopped pool), running
jobs finish (models are written through staging and renamed, so nothing half-written is ever
visible), the outbox is flushed a last time and the status server stops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import FrameType

import pandas as pd
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from ml_monitoring_service.alerts import AlertmanagerReceiver, Outbox, Receiver, WebhookReceiver
from ml_monitoring_service.config import EnvironmentSettings, ServiceSetConfig
from ml_monitoring_service.daemon.http import StatusServer
from ml_monitoring_service.daemon.jobs import SetRunner
from ml_monitoring_service.daemon.metrics import DaemonMetrics
from ml_monitoring_service.errors import BackendError, MonitoringError
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.tracking import RunTracker

logger = logging.getLogger(__name__)

Clock = Callable[[], pd.Timestamp]


def utc_now() -> pd.Timestamp:
    """The daemon's default ``now``: real UTC time, to the second."""
    return pd.Timestamp.now(tz="UTC").floor("s")


def build_receivers(env: EnvironmentSettings, ttl: timedelta) -> list[Receiver]:
    """Alertmanager and/or webhook from ``ALERTMANAGER_URL`` / ``ALERT_WEBHOOK_URL``."""
    receivers: list[Receiver] = []
    if env.alertmanager_url:
        receivers.append(AlertmanagerReceiver(env.alertmanager_url, ttl=ttl))
    if env.alert_webhook_url:
        receivers.append(WebhookReceiver(env.alert_webhook_url))
    return receivers


class Daemon:
    """Schedules every set's jobs; :meth:`start`, then :meth:`stop` (or :meth:`run_forever`)."""

    def __init__(
        self,
        sets: Sequence[ServiceSetConfig],
        env: EnvironmentSettings,
        *,
        variants: Sequence[Variant] | None = None,
        tracker: RunTracker | None = None,
        clock: Clock = utc_now,
        flush_interval: timedelta = timedelta(seconds=30),
        serve_http: bool = True,
    ) -> None:
        self.env, self.clock, self.flush_interval = env, clock, flush_interval
        self.metrics = DaemonMetrics()
        self._stopping = threading.Event()
        shortest = min(s.schedule.inference_interval for s in sets).to_pytimedelta()
        receivers = build_receivers(env, ttl=max(timedelta(minutes=5), 4 * shortest))
        self.outbox = Outbox(env.outbox_dir, receivers) if receivers else None
        if not receivers:
            logger.info("no ALERTMANAGER_URL or ALERT_WEBHOOK_URL: alerts are only logged")
        tracker = tracker or RunTracker(env.mlflow_tracking_uri, enabled=False)
        self.runners = {
            s.name: SetRunner(
                s,
                env,
                variants or [Variant.parse(v) for v in s.preprocessing.variants],
                self.metrics,
                self.outbox,
                tracker,
                self._stopping.is_set,
            )
            for s in sets
        }
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=2 * len(sets) + 1)},
            timezone="UTC",
        )
        self.server = (
            StatusServer(
                env.metrics_host, env.metrics_port, self.metrics.exposition, self.missing_models
            )
            if serve_http
            else None
        )

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Build the schedule from the configuration and start it (and the status server)."""
        if self.server is not None:
            self.server.start()
        started = utc_now().to_pydatetime()
        for name, runner in self.runners.items():
            schedule = runner.config.schedule
            untrained = bool(runner.missing())
            first_training = started if untrained else started + schedule.training_interval
            self._add(
                f"train:{name}", self._train, name, schedule.training_interval, first_training
            )
            first_inference = started + schedule.inference_interval if untrained else started
            self._add(
                f"infer:{name}", self._infer, name, schedule.inference_interval, first_inference
            )
        if self.outbox is not None:
            interval = pd.Timedelta(self.flush_interval)
            self._add("flush-alerts", self._flush, "", interval, started + self.flush_interval)
        self.scheduler.start()
        logger.info("daemon started for sets %s", sorted(self.runners))

    def stop(self) -> None:
        """Stop gracefully: no new job starts, running ones finish, the outbox is flushed."""
        if self._stopping.is_set():
            return
        logger.info("stopping: waiting for running jobs to finish")
        self._stopping.set()
        if self.scheduler.running:
            self.scheduler.remove_all_jobs()
            self.scheduler.shutdown(wait=True)
        if self.outbox is not None:
            self._flush("")
        if self.server is not None:
            self.server.stop()
        logger.info("stopped")

    def run_forever(self) -> None:
        """Start, wait for SIGTERM or SIGINT, stop gracefully."""
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("received %s", signal.Signals(signum).name)
            wake.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.start()
        while not wake.wait(timeout=1.0):
            pass
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def missing_models(self) -> dict[str, list[str]]:
        """Per set, the variants without a loaded model (all empty lists = ready)."""
        return {name: runner.missing() for name, runner in self.runners.items()}

    # ----------------------------------------------------------------------------------- jobs

    def _add(
        self,
        job_id: str,
        func: Callable[[str], None],
        set_name: str,
        interval: pd.Timedelta,
        first_run: object,
    ) -> None:
        seconds = interval.total_seconds()
        self.scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            args=[set_name],
            id=job_id,
            name=job_id,
            next_run_time=first_run,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds / 2)),
        )

    def _train(self, set_name: str) -> None:
        runner = self.runners[set_name]
        was_ready = not runner.missing()
        if self._run_job(set_name, "training", lambda: runner.train(self.clock())):
            if not was_ready and not self.stopping:
                self._run_soon(f"infer:{set_name}")

    def _infer(self, set_name: str) -> None:
        runner = self.runners[set_name]
        if self._run_job(set_name, "inference", lambda: runner.infer(self.clock())):
            if self.outbox is not None and not self.stopping:
                self._flush("")

    def _flush(self, _: str) -> None:
        if self.outbox is None:
            return
        result = self.outbox.flush()
        self.metrics.outbox_pending.set(result.pending)
        if result.errors:
            self.metrics.delivery_failures.inc()
            logger.warning("alert delivery failed, %d pending: %s", result.pending, result.errors)

    def _run_job(self, set_name: str, job: str, body: Callable[[], object]) -> bool:
        """Run ``body``; log and count any exception with the set's name. True on success."""
        if self.stopping:
            return False
        started = time.perf_counter()
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - one set's failure must not stop the others
            kind = (
                "backend"
                if isinstance(exc, BackendError)
                else "data"
                if isinstance(exc, MonitoringError)
                else "internal"
            )
            self.metrics.job_failures.labels(set_name, job, kind).inc()
            logger.error(
                "[%s] %s failed (%s): %s", set_name, job, kind, exc, exc_info=kind == "internal"
            )
            return False
        finally:
            self.metrics.job_duration.labels(set_name, job).observe(time.perf_counter() - started)
        self.metrics.last_success.labels(set_name, job).set(time.time())
        return True

    def _run_soon(self, job_id: str) -> None:
        try:
            self.scheduler.modify_job(job_id, next_run_time=utc_now().to_pydatetime())
        except Exception as exc:  # noqa: BLE001 - job may be gone during shutdown
            logger.debug("could not reschedule %s: %s", job_id, exc)
