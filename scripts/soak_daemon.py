"""Soak and alert-latency runs of the daemon, in-process and on a simulated clock.

    PYTHONPATH=src .venv/bin/python scripts/soak_daemon.py soak --ticks 1000
    PYTHONPATH=src .venv/bin/python scripts/soak_daemon.py latency --hours 12

``soak`` drives the daemon's own scheduled inference job (``Daemon._infer``: scoring, summary and
PNGs, metrics, alert policy and its state file; no receiver, so alerts are logged) ``--ticks`` times
with a tiny model, retraining every ``--retrain-every`` ticks, and samples the process RSS
(``/proc/self/status``; psutil when installed) to show whether memory grows per tick.

``latency`` runs the daemon's inference job every ``--interval`` of simulated time over
``--hours`` of the demo stream (``daemon/demo_stream.py``: the same data every tick sees), with the
demo set's alert policy (3 of 5 windows). For each injected incident it reports the simulated delay
from incident start to the tick that queued the firing notification (delivery follows in the same
job: one HTTP post).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ml_monitoring_service.alerts import Notification
from ml_monitoring_service.config import DEFAULT_CONFIG_PATH, EnvironmentSettings, load_config
from ml_monitoring_service.daemon.scheduler import Daemon

TINY = {
    "services": ["frontend", "cart", "checkout", "payment"],
    "relationships": {"frontend": ["cart", "checkout"], "checkout": ["payment"]},
    "preprocessing": {"window_size": 16, "train_stride": 4, "variants": ["grid:30s"]},
    "model": {"max_epochs": 2, "patience": 1, "windows_per_epoch": 64, "d_model": 16, "n_heads": 2},
    "schedule": {"training_lookback": "2h", "inference_lookback": "30min"},
    "lifecycle": {"max_training_anomaly_rate": 1.0, "validation_tolerance": 100},
}


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    try:
        import psutil  # type: ignore[import-not-found, unused-ignore]

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def demo_set(tmp: Path, overrides: dict[str, object]) -> object:
    raw = json.loads(json.dumps(_demo_raw()))
    body = {**raw, **overrides, "model": {**raw.get("model", {}), **overrides.get("model", {})}}  # type: ignore[dict-item]
    path = tmp / "sets.yaml"
    path.write_text(json.dumps({"service_sets": {"demo": body}}))
    return load_config(path).service_set("demo")


def _demo_raw() -> dict[str, object]:
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["service_sets"]["demo"]
    return dict(raw)


def soak(args: argparse.Namespace, tmp: Path) -> None:
    config = demo_set(tmp, TINY)
    env = EnvironmentSettings(output_dir=tmp / "output", metrics_port=0)
    now = pd.Timestamp("2024-03-04T00:00:00Z")
    daemon = Daemon([config], env, clock=lambda: now, serve_http=False)  # type: ignore[list-item]
    daemon._train("demo")
    samples = [(0, rss_mib())]
    started = time.perf_counter()
    for tick in range(1, args.ticks + 1):
        now += pd.Timedelta(minutes=1)
        if tick % args.retrain_every == 0:
            daemon._train("demo")
        daemon._infer("demo")
        if tick % args.sample_every == 0:
            samples.append((tick, rss_mib()))
            print(f"tick {tick:5d}  rss {samples[-1][1]:7.1f} MiB", flush=True)
    seconds = time.perf_counter() - started
    text = daemon.metrics.exposition().decode()
    failures = [
        line for line in text.splitlines() if line.startswith("ml_monitoring_job_failures_total")
    ]
    first_after_warmup = samples[min(1, len(samples) - 1)][1]
    print(
        f"ticks {args.ticks} in {seconds:.0f} s ({1000 * seconds / args.ticks:.0f} ms/tick); "
        f"RSS start {samples[0][1]:.1f} MiB, "
        f"after {samples[1][0]} ticks {first_after_warmup:.1f} MiB, "
        f"end {samples[-1][1]:.1f} MiB; growth after warm-up "
        f"{samples[-1][1] - first_after_warmup:+.1f} MiB; job failures: {failures or 'none'}"
    )


def latency(args: argparse.Namespace, tmp: Path) -> None:
    overrides = {
        "preprocessing": {"window_size": 32, "train_stride": 4, "variants": ["grid:30s"]},
        "model": {"max_epochs": args.epochs, "patience": 3},
    }
    config = demo_set(tmp, overrides)
    start = pd.Timestamp("2024-03-04T00:00:00Z")
    end = start + pd.Timedelta(hours=args.hours)
    env = EnvironmentSettings(output_dir=tmp / "output", metrics_port=0)
    clock = [start]
    daemon = Daemon([config], env, clock=lambda: clock[0], serve_http=False)  # type: ignore[list-item]
    runner = daemon.runners["demo"]
    daemon._train("demo")  # clean demo data before ``start``
    firings: list[pd.Timestamp] = []
    original: Callable[..., list[Notification]] = runner.infer

    def infer(now: pd.Timestamp) -> list[Notification]:
        notes = original(now)
        firings.extend(now for n in notes if n.event == "firing")
        return notes

    runner.infer = infer  # type: ignore[method-assign]
    interval = pd.Timedelta(args.interval)
    while clock[0] <= end:
        daemon._infer("demo")
        clock[0] += interval
    assert runner.demo_stream is not None
    delays: list[float | None] = []
    for incident in runner.demo_stream.window(start, end).incidents:
        hit = [t for t in firings if incident.start <= t <= incident.end + 2 * interval]
        delay = (min(hit) - incident.start).total_seconds() / 60 if hit else None
        delays.append(delay)
        outcome = "missed" if delay is None else f"{delay:.1f} min"
        print(f"{incident.kind:>16} {incident.service:>9} {incident.start}  delay {outcome}")
    found = [d for d in delays if d is not None]
    matched = sum(
        any(
            i.start <= t <= i.end + 2 * interval
            for i in runner.demo_stream.window(start, end).incidents
        )
        for t in firings
    )
    print(
        f"incidents {len(delays)}, alerted {len(found)}; firings {len(firings)}, "
        f"{len(firings) - matched} outside any incident; delay median "
        f"{statistics.median(found) if found else float('nan'):.1f} min, max "
        f"{max(found) if found else float('nan'):.1f} min (inference every {interval})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--ticks", type=int, default=1000)
    s.add_argument("--retrain-every", type=int, default=250)
    s.add_argument("--sample-every", type=int, default=100)
    lat = sub.add_parser("latency")
    lat.add_argument("--hours", type=float, default=12)
    lat.add_argument("--interval", default="5min")
    lat.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        (soak if args.mode == "soak" else latency)(args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
