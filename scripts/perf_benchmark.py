"""Performance of the transformer detector and of preprocessing: sizes, speed and peak memory.

    PYTHONPATH=src .venv/bin/python scripts/perf_benchmark.py --out perf.json

Two parts, each measurement in a fresh child process so that peak RSS (``ru_maxrss`` of the child)
belongs to that measurement alone:

* **Model, per service count S** (``--services 3,6,50,200``): a synthetic ``ServiceTensor`` on a
  30 s grid with ``--features`` metrics plus the three features the pipeline always adds
  (``severity_level``, ``event_count`` and ``seconds_since_event``, see ``prepare/densify.py``),
  so the network sees F + 3 features. The detector has the configuration defaults
  (``ModelConfig``, ``PreprocessingConfig``: window 32, train stride 4, score stride 1) except
  for the schedule: ``--epochs`` epochs of at most ``--windows-per-epoch`` windows, no early
  stopping. Training data is the daemon's default
  training lookback (6 h at 30 s, 20 % validation). Reported: trainable parameters, training
  windows/s (time inside the training epochs only), the full ``fit`` time, and inference latency
  of one ``score`` call on the daemon's default inference lookback (2 h at 30 s = 240 steps →
  209 windows), per service set and per window (median of ``--repeats`` calls after a warm-up).
* **Preprocessing on ``--rows`` combined-dataset rows**: ``--prep-services`` services each
  reporting once a second (timestamps aligned to whole seconds, ~10 % of reports missing) with F
  metrics and a severity level, generated vectorised and written to Parquet and CSV (not timed).
  Timed, per variant: ``read_combined`` (Parquet) → ``densify`` → ``RobustScaler`` fit+transform →
  ``make_windows`` at the training stride ("ingest + tensorise"); and ``read_combined`` of the CSV
  on its own. ``--profile`` adds the top cumulative costs of each child (cProfile).
* **Call-graph mining on ``--trace-lines`` log lines** (``explain/call_graph.py``, what the
  ranking does when a set configures no call graph): ``--prep-services`` services calling each
  other as a binary tree, each request a root-to-leaf path of up to 6 services, each logging one
  line on entry and one on exit under the request's trace id. Timed: ``mine_call_graph`` alone; the
  peak RSS includes generating the lines.

Nothing here asserts timings; ``tests/test_perf_benchmark.py`` runs a tiny version for structure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STEP = pd.Timedelta("30s")
START = pd.Timestamp("2024-06-03T00:00:00Z")
TRAIN_LOOKBACK = pd.Timedelta("6h")  # ScheduleConfig.training_lookback default
INFERENCE_LOOKBACK = pd.Timedelta("2h")  # ScheduleConfig.inference_lookback default
VALIDATION_FRACTION = 0.2  # ModelConfig.validation_fraction default
REFERENCE = {"rows": 1_000_000, "seconds": 139.0, "peak_rss_mb": 714.0}
TARGET = {"seconds": 10.0, "peak_rss_mb": 1024.0}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", default="3,6,50,200", help="comma-separated S values")
    parser.add_argument("--features", type=int, default=5, help="metrics per service (F)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per S")
    parser.add_argument("--windows-per-epoch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed score calls per S")
    parser.add_argument("--rows", type=int, default=1_000_000, help="preprocessing rows (0: skip)")
    parser.add_argument("--prep-services", type=int, default=50)
    parser.add_argument(
        "--trace-lines", type=int, default=1_000_000, help="call-graph mining lines (0: skip)"
    )
    parser.add_argument("--variants", default="event,grid:30s,grid:1s")
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV ingest")
    parser.add_argument("--profile", action="store_true", help="cProfile each preprocessing child")
    parser.add_argument("--workdir", type=Path, default=None, help="data files (default: temp)")
    parser.add_argument("--out", type=Path, default=Path("perf_results.json"))
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch CPU threads (1: on a shared 2-core machine more threads ran ~9x slower)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the model trains and scores (ModelConfig.device; default cpu)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.service_list = [int(s) for s in args.services.split(",") if s.strip()]
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(s < 1 for s in args.service_list) or args.features < 1:
        parser.error("--services and --features must be positive")
    return args


# ------------------------------------------------------------------------------ child plumbing


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    ``VmHWM`` where ``/proc`` has it: ``ru_maxrss`` survives ``exec`` on Linux, so a child's would
    start at its parent's peak (here: the generated 1M-row frame). Elsewhere ``ru_maxrss``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its last stdout line is the JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    done = subprocess.run(  # noqa: S603 - this script, fixed arguments
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {spec['part']} failed ({done.returncode}):\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def child_main(spec: dict[str, Any]) -> None:
    started_rss = peak_rss_mb()
    part = spec["part"]
    profiler = cProfile.Profile() if spec.get("profile") else None
    if profiler is not None:
        profiler.enable()
    result = CHILD_PARTS[part](spec)
    if profiler is not None:
        profiler.disable()
        result["profile_top"] = top_costs(profiler)
    result["rss_at_start_mb"] = started_rss
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def top_costs(profiler: cProfile.Profile, limit: int = 12) -> list[str]:
    """The ``limit`` most expensive functions by cumulative time, one line each."""
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(limit)
    lines = [line.strip() for line in buffer.getvalue().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("ncalls"))
    return [line for line in lines[start + 1 :] if line][:limit]


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


# ------------------------------------------------------------------------------------- model


def synthetic_tensor(n_services: int, n_metrics: int, span: pd.Timedelta, seed: int) -> Any:
    """A ``ServiceTensor`` on a 30 s grid: daily-cycle metrics, rare severities, steady counts,
    no gaps in reporting."""
    from ml_monitoring_service.prepare.densify import ServiceTensor, feature_names

    metrics = [f"metric_{i}" for i in range(n_metrics)]
    timestamps = pd.date_range(START, periods=int(span / STEP), freq=STEP, name="timestamp")
    rng = np.random.default_rng(seed)
    steps = len(timestamps)
    phase = 2 * np.pi * np.asarray(timestamps.hour * 60 + timestamps.minute) / 1440.0
    level = rng.uniform(1.0, 10.0, size=(1, n_services, n_metrics))
    gauges = level * (1 + 0.3 * np.sin(phase)[:, None, None])
    gauges = gauges + rng.normal(0.0, 0.1, size=(steps, n_services, n_metrics))
    severity = (rng.random((steps, n_services, 1)) < 0.01) * 1.0
    counts = np.sqrt(rng.poisson(8.0, size=(steps, n_services, 1)).astype(float))
    gaps = np.zeros((steps, n_services, 1))  # every service reports at every step
    values = np.concatenate([gauges, severity, counts, gaps], axis=2)
    return ServiceTensor(
        values=values,
        observed=np.ones((steps, n_services), dtype=bool),
        timestamps=timestamps,
        services=tuple(f"svc-{i:03d}" for i in range(n_services)),
        features=feature_names(metrics),
    )


def build_detector(spec: dict[str, Any]) -> Any:
    """The pipeline's detector, configuration defaults except for the training schedule."""
    from ml_monitoring_service.config import ModelConfig, ServiceSetConfig
    from ml_monitoring_service.pipeline.training import build_detector as pipeline_detector

    # Only hyper-parameters reach the detector; the network is sized from the data at fit time.
    config = ServiceSetConfig(
        source="demo",
        services=("placeholder",),
        metrics={"placeholder": "placeholder"},
        model=ModelConfig(
            max_epochs=spec["epochs"],
            windows_per_epoch=spec["windows_per_epoch"],
            patience=spec["epochs"],
            device=spec.get("device", "cpu"),
        ),
    )
    return pipeline_detector(config, show_progress=False)


def model_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit and score the detector for one service count; see the module docstring."""
    import torch

    from ml_monitoring_service.detectors import TransformerAutoencoderDetector  # noqa: F401

    torch.set_num_threads(spec["torch_threads"])
    n_services = spec["services"]
    imported_rss = peak_rss_mb()
    history = synthetic_tensor(n_services, spec["features"], TRAIN_LOOKBACK, seed=n_services)
    cut = int(history.n_steps * (1 - VALIDATION_FRACTION))
    detector = build_detector(spec)
    epoch_seconds: list[float] = []
    epoch_windows: list[int] = []
    train_epoch = detector._train_epoch

    def timed_epoch(values: Any, *rest: Any) -> float:
        loss, seconds = timed(lambda: train_epoch(values, *rest))
        epoch_seconds.append(seconds)
        epoch_windows.append(min(len(values), detector.windows_per_epoch))
        return float(loss)

    detector._train_epoch = timed_epoch  # instance attribute: times the real method
    _, fit_seconds = timed(lambda: detector.fit(history.slice(0, cut), history.slice(cut, None)))
    return {
        "torch": torch.__version__,
        "device": accelerator_name(detector.device_),
        "services": n_services,
        "features_in": spec["features"],
        "features_model": len(history.features),
        "parameters": detector.parameter_count(),
        "training_windows_available": detector.metadata_["training_windows"],
        "epochs": len(epoch_seconds),
        "trained_windows": sum(epoch_windows),
        "train_seconds": sum(epoch_seconds),
        "train_windows_per_s": sum(epoch_windows) / max(sum(epoch_seconds), 1e-9),
        "fit_seconds": fit_seconds,
        "rss_after_imports_mb": imported_rss,
        **inference(detector, n_services, spec),
        "peak_gpu_mb": (
            torch.cuda.max_memory_allocated(detector.device_) / 2**20
            if detector.device_.type == "cuda"
            else None
        ),
    }


def accelerator_name(device: Any) -> str:
    """``cpu``, or the GPU's model name: a timing means little without the card it ran on."""
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def inference(detector: Any, n_services: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Median latency of scoring the daemon's default inference lookback (one tick of one set)."""
    tick = synthetic_tensor(n_services, spec["features"], INFERENCE_LOOKBACK, seed=n_services + 1)
    result = detector.score(tick)  # warm-up
    seconds = [timed(lambda: detector.score(tick))[1] for _ in range(spec["repeats"])]
    latency = statistics.median(seconds)
    return {
        "inference_steps": tick.n_steps,
        "inference_windows": len(result.window_scores),
        "inference_seconds_per_set": latency,
        "inference_ms_per_window": 1000 * latency / len(result.window_scores),
    }


# ----------------------------------------------------------------------------- preprocessing


def generate_rows(n_rows: int, n_services: int, n_metrics: int, seed: int = 0) -> pd.DataFrame:
    """~``n_rows`` canonical rows: each service reports once a second, ~10 % of reports missing."""
    from ml_monitoring_service.data.schema import SERVICE, SEVERITY, TIMESTAMP

    rng = np.random.default_rng(seed)
    steps = int(np.ceil(n_rows / n_services / 0.9))
    keep = rng.random(steps * n_services) < 0.9
    step_index = np.repeat(np.arange(steps), n_services)[keep][:n_rows]
    service_index = np.tile(np.arange(n_services), steps)[keep][:n_rows]
    names = np.array([f"svc-{i:03d}" for i in range(n_services)], dtype=object)
    frame = pd.DataFrame(
        {
            TIMESTAMP: START + pd.to_timedelta(step_index, unit="s"),
            SERVICE: names[service_index],
        }
    )
    for m in range(n_metrics):
        base = rng.uniform(1.0, 100.0, size=n_services)[service_index]
        frame[f"metric_{m}"] = base * (1 + 0.1 * rng.standard_normal(len(frame)))
    frame[SEVERITY] = rng.choice([0.0, 1.0, 2.0], size=len(frame), p=[0.97, 0.02, 0.01])
    return frame


def prep_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Ingest + tensorise one variant (Parquet), or CSV ingest alone (``variant`` is None)."""
    from ml_monitoring_service.config import PreprocessingConfig
    from ml_monitoring_service.data.readers import read_combined
    from ml_monitoring_service.errors import InsufficientDataError
    from ml_monitoring_service.prepare.densify import densify, fit_count_horizon, scale_floors
    from ml_monitoring_service.prepare.normalise import RobustScaler
    from ml_monitoring_service.prepare.time_features import cyclic_time_features
    from ml_monitoring_service.prepare.variants import Variant
    from ml_monitoring_service.prepare.windows import make_windows

    metrics = spec["metrics"]
    frame, read_s = timed(lambda: read_combined(spec["path"], metrics))
    result: dict[str, Any] = {"format": Path(spec["path"]).suffix[1:], "rows": len(frame)}
    result["stages"] = {"read_combined": read_s}
    if spec["variant"] is None:
        return result
    prep = PreprocessingConfig()
    services = sorted(frame["service"].unique())
    variant = Variant.parse(spec["variant"])
    tensor, result["stages"]["densify"] = timed(
        lambda: densify(frame, services, metrics, variant, fit_count_horizon(frame, services))
    )
    scaled, result["stages"]["normalise"] = timed(
        lambda: (
            RobustScaler()
            .fit(tensor.values, min_scale=scale_floors(tensor))
            .transform(tensor.values)
        )
    )
    result.update(variant=variant.label, tensor_shape=list(tensor.values.shape))
    try:
        windows, result["stages"]["windows"] = timed(
            lambda: make_windows(
                scaled,
                cyclic_time_features(tensor.timestamps),
                tensor.timestamps,
                prep.window_size,
                prep.train_stride,
            )
        )
    except InsufficientDataError as exc:  # tiny smoke sizes on a coarse grid
        result["windows_shape"], result["note"] = None, str(exc)
        return result
    result["windows_shape"] = list(windows.values.shape)
    return result


TRACE_DEPTH = 6  # services on one request's path (realistic call chains are 3-6 deep)


def generate_traces(n_lines: int, n_services: int, seed: int = 0) -> pd.DataFrame:
    """~``n_lines`` log lines of nested requests: service ``i`` calls ``2i + 1`` and ``2i + 2``."""
    from ml_monitoring_service.data.schema import SERVICE, SEVERITY, TIMESTAMP, TRACE_ID

    rng = np.random.default_rng(seed)
    n_traces = max(1, n_lines // (2 * TRACE_DEPTH))
    path = np.zeros((n_traces, TRACE_DEPTH), dtype=np.int64)
    for hop in range(1, TRACE_DEPTH):
        child = 2 * path[:, hop - 1] + 1 + rng.integers(0, 2, n_traces)
        path[:, hop] = np.where(child < n_services, child, path[:, hop - 1])
    depth = np.arange(TRACE_DEPTH)
    # Entry at depth d ms after the request starts, exit 2·DEPTH - d ms after: callers enclose.
    offsets = np.concatenate([depth, 2 * TRACE_DEPTH - depth])
    starts = np.arange(n_traces) * 10
    names = np.array([f"svc-{i:03d}" for i in range(n_services)], dtype=object)
    return pd.DataFrame(
        {
            TIMESTAMP: START + pd.to_timedelta((starts[:, None] + offsets).ravel(), unit="ms"),
            SERVICE: names[np.concatenate([path, path], axis=1).ravel()],
            SEVERITY: 0.0,
            TRACE_ID: np.repeat(np.arange(n_traces).astype(str), 2 * TRACE_DEPTH),
        }
    )


def traces_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Mine the call graph of ``spec["lines"]`` generated log lines."""
    from ml_monitoring_service.explain.call_graph import mine_call_graph

    frame = generate_traces(spec["lines"], spec["services"])
    services = sorted(frame["service"].unique())
    edges, seconds = timed(lambda: mine_call_graph(frame, services))
    return {"lines": len(frame), "services": len(services), "edges": len(edges), "seconds": seconds}


CHILD_PARTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "model": model_child,
    "prep": prep_child,
    "traces": traces_child,
}


# ------------------------------------------------------------------------------------ driver


def model_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for n_services in args.service_list:
        spec = {
            "part": "model",
            "services": n_services,
            "features": args.features,
            "epochs": args.epochs,
            "windows_per_epoch": args.windows_per_epoch,
            "repeats": args.repeats,
            "torch_threads": args.torch_threads,
            "device": args.device,
        }
        record = run_child(spec)
        record["parameters_per_service"] = record["parameters"] / n_services
        print(f"[model] S={n_services} done", file=sys.stderr)
        results.append(record)
    return results


def prep_part(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from ml_monitoring_service.data.readers import write_combined

    frame = generate_rows(args.rows, args.prep_services, args.features)
    metrics = [c for c in frame.columns if c.startswith("metric_")]
    parquet = write_combined(frame, workdir / "combined.parquet")
    csv = None if args.no_csv else write_combined(frame, workdir / "combined.csv")
    generated = {"rows": len(frame), "services": args.prep_services, "metrics": len(metrics)}
    del frame
    base = {"part": "prep", "metrics": metrics, "profile": args.profile}
    runs = []
    for variant in args.variant_list:
        record = run_child({**base, "path": str(parquet), "variant": variant})
        record["ingest_tensorise_seconds"] = sum(record["stages"].values())
        runs.append(record)
        print(f"[prep] {variant} done", file=sys.stderr)
    if csv is not None:
        record = run_child({**base, "path": str(csv), "variant": None})
        record["ingest_tensorise_seconds"] = None
        runs.append(record)
    return {"data": generated, "runs": runs, "reference": REFERENCE, "target": TARGET}


def traces_part(args: argparse.Namespace) -> dict[str, Any]:
    record = run_child(
        {"part": "traces", "lines": args.trace_lines, "services": args.prep_services}
    )
    print("[traces] done", file=sys.stderr)
    return record


def format_model_table(records: Sequence[dict[str, Any]]) -> str:
    header = (
        "| S | device | params | params / S | train windows/s | fit s | score s / set "
        "| score ms / window | peak RSS MiB | peak GPU MiB |\n" + "|---" * 10 + "|"
    )
    rows = [
        f"| {r['services']} | {r['device']} | {r['parameters']:,} "
        f"| {r['parameters_per_service']:,.0f} "
        f"| {r['train_windows_per_s']:.1f} | {r['fit_seconds']:.1f} "
        f"| {r['inference_seconds_per_set']:.3f} | {r['inference_ms_per_window']:.2f} "
        f"| {r['peak_rss_mb']:.0f} | {_megabytes(r['peak_gpu_mb'])} |"
        for r in records
    ]
    return "\n".join([header, *rows])


def format_prep_table(prep: dict[str, Any]) -> str:
    header = (
        "| input | variant | read s | densify s | normalise s | windows s | total s "
        "| tensor [T,S,F] | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for r in prep["runs"]:
        stages = r["stages"]
        total = r["ingest_tensorise_seconds"]
        rows.append(
            f"| {r['format']} | {r.get('variant', '(read only)')} "
            f"| {stages['read_combined']:.2f} | {_seconds(stages.get('densify'))} "
            f"| {_seconds(stages.get('normalise'))} | {_seconds(stages.get('windows'))} "
            f"| {_seconds(total)} | {r.get('tensor_shape', '')} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join([header, *rows])


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _megabytes(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables, write ``--out``; return the JSON payload."""
    from ml_monitoring_service.benchmarking import code_version

    args = parse_args(argv)
    started = time.perf_counter()
    model = model_part(args)
    prep = None
    traces = traces_part(args) if args.trace_lines > 0 else None
    if args.rows > 0:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            prep = prep_part(args, args.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix="perf_benchmark_") as tmp:
                prep = prep_part(args, Path(tmp))
    payload = {
        "config": {
            key: value
            for key, value in vars(args).items()
            if key not in ("child", "out", "workdir", "service_list", "variant_list")
        },
        "code": code_version(ROOT),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "model": model,
        "preprocessing": prep,
        "call_graph_mining": traces,
        "wall_seconds": time.perf_counter() - started,
    }
    print(format_model_table(model))
    if prep is not None:
        print()
        print(format_prep_table(prep))
    if traces is not None:
        print(
            f"\ncall graph from {traces['lines']:,} log lines of {traces['services']} services: "
            f"{traces['edges']} edges in {traces['seconds']:.2f} s, "
            f"peak RSS {traces['peak_rss_mb']:.0f} MiB"
        )
    print(f"wall time {payload['wall_seconds']:.1f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        child_main(json.loads(args.child))
        return 0
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
