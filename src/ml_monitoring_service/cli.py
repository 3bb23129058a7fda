"""Command line entry point (``./main.sh``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ml_monitoring_service.config import (
    DEFAULT_CONFIG_PATH,
    EnvironmentSettings,
    ServiceSetConfig,
    load_config,
)
from ml_monitoring_service.errors import BackendError, ConfigError, MonitoringError
from ml_monitoring_service.prepare.variants import Variant

logger = logging.getLogger("ml_monitoring_service")


def build_parser() -> argparse.ArgumentParser:
    """Flags for the daemon (default) and for one-shot training and inference."""
    parser = argparse.ArgumentParser(
        prog="main.sh",
        description=(
            "Learn normal behaviour of a set of microservices and flag anomalous windows. "
            "Without --run-once-* flags, run the monitoring daemon (see docs/DAEMON.md)."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--run-once-training",
        action="store_true",
        help="train a model per variant on the training lookback, then exit",
    )
    mode.add_argument(
        "--run-once-inference",
        action="store_true",
        help="score the inference lookback (training first when no model exists)",
    )
    parser.add_argument(
        "--active-set",
        default="demo",
        help="service set from the config (default: demo); the daemon accepts several, "
        "comma-separated",
    )
    parser.add_argument(
        "--inference-variants",
        "--variants",
        dest="variants",
        default=None,
        help="comma-separated variants, e.g. event,grid:1s (default: from the config)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"service-set file (default: {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--now",
        default=None,
        help="end of the inference period as an ISO time (default: current UTC time); "
        "for the daemon, the time of its start (its clock then advances in real time)",
    )
    parser.add_argument("--no-tracking", action="store_true", help="do not record runs in MLflow")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _variants(config: ServiceSetConfig, text: str | None) -> list[Variant]:
    labels = text.split(",") if text else list(config.preprocessing.variants)
    return [Variant.parse(label) for label in labels if label.strip()]


def _now(text: str | None) -> pd.Timestamp:
    stamp = pd.Timestamp(text) if text else pd.Timestamp.now(tz="UTC")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s")


def _set_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _run_daemon(args: argparse.Namespace) -> None:
    """Run the daemon on the chosen sets until SIGTERM or SIGINT."""
    from ml_monitoring_service.daemon.scheduler import Daemon, utc_now
    from ml_monitoring_service.tracking import RunTracker

    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # job start/end lines every tick
    app = load_config(args.config)
    sets = [app.service_set(name) for name in _set_names(args.active_set)]
    env = EnvironmentSettings.from_environment()
    variants = _variants(sets[0], args.variants) if args.variants else None
    clock = utc_now
    if args.now:
        offset = _now(args.now) - utc_now()

        def clock() -> pd.Timestamp:
            return utc_now() + offset

    tracker = RunTracker(env.mlflow_tracking_uri, enabled=not args.no_tracking)
    Daemon(sets, env, variants=variants, tracker=tracker, clock=clock).run_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon, or the requested one-shot job.

    Exit code 0 on success (for the daemon: a graceful stop), 2 on configuration or data errors
    (fix the input), 3 when a backend (Splunk, Prometheus) could not be queried (retry later).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from ml_monitoring_service.pipeline.run_once import run_inference, run_training
    from ml_monitoring_service.tracking import RunTracker

    try:
        if not (args.run_once_training or args.run_once_inference):
            _run_daemon(args)
            return 0
        names = _set_names(args.active_set)
        if len(names) != 1:
            raise ConfigError(f"--run-once-* runs one service set, got {names}")
        config = load_config(args.config).service_set(names[0])
        env = EnvironmentSettings.from_environment()
        variants = _variants(config, args.variants)
        tracker = RunTracker(env.mlflow_tracking_uri, enabled=not args.no_tracking)
        now = _now(args.now)
        if args.run_once_training:
            run_training(config, env, variants, now, tracker)
        else:
            for outcome in run_inference(config, env, variants, now, tracker):
                print(
                    f"{outcome.variant.label}: {outcome.summary['anomalies']} anomalous windows of "
                    f"{outcome.summary['windows_scored']} → {outcome.files[0]}"
                )
    except BackendError as exc:
        logger.error("%s", exc)
        return 3
    except MonitoringError as exc:
        logger.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
