"""Evaluate every detector on public server-metric benchmarks in the SMD layout (SMD, ASD).

    PYTHONPATH=src .venv/bin/python scripts/evaluate_public.py --dataset smd \\
        --detectors transformer,pca,robust_zscore,isolation_forest,random \\
        --mode one-service --max-epochs 10 --out results_smd.json

``--dataset`` is ``smd`` / ``asd`` (``../shared/data/<name>`` beside the repository) or a directory
in the same layout (``ml_monitoring_service.public_data``). Per machine, the training file trains
(its last 20 % validates, ``chronological_split``) and the test file is scored with stride 1. Each
window's score is assigned to the window's end step (the first W−1 steps get the first window's
score), per-metric scores likewise.

Reported per machine and detector, then the mean over machines: AUC-PR (average precision),
VUS-PR and VUS-ROC (``metrics_vus``, buffers 0 … ``--vus-max-buffer``), ROC AUC, F1 at the
operational threshold (the detector's persisted ``threshold_``), best F1 over thresholds (an
upper bound), the legacy point-adjusted best F1 (inflated; for comparison with old papers only)
and HitRate@100 %/150 % of the per-metric attribution against ``interpretation_label``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ml_monitoring_service.detectors import ScoreResult
from ml_monitoring_service.metrics_vus import point_metrics
from ml_monitoring_service.pipeline.training import chronological_split
from ml_monitoring_service.public_data import (
    MODES,
    SAMPLING_INTERVALS,
    MachineData,
    list_machines,
    load_machine,
    machine_tensors,
    point_scores,
    root_cause_hit_rates,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
VALIDATION_FRACTION = 0.2
# (JSON key, header) of the printed tables.
TABLE_COLUMNS = (
    ("auc_pr", "AUC-PR"),
    ("vus_pr", "VUS-PR"),
    ("roc_auc", "ROC AUC"),
    ("f1_at_threshold", "F1@thr"),
    ("best_f1", "bestF1(UB)"),
    ("pa_best_f1_legacy", "PA-F1(legacy)"),
    ("hitrate@100", "HR@100"),
    ("hitrate@150", "HR@150"),
    ("seconds", "fit+score s"),
)


def _synthetic_benchmark() -> Any:
    """``scripts/synthetic_benchmark.py``: its detector factory and code-version record."""
    name = "synthetic_benchmark"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


BENCH = _synthetic_benchmark()
DETECTORS: tuple[str, ...] = BENCH.DETECTORS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="smd, asd or a directory (SMD layout)")
    parser.add_argument("--machines", default=None, help="comma-separated; default: all")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help=f"from {DETECTORS}")
    parser.add_argument("--mode", choices=MODES, default="one-service")
    parser.add_argument("--max-epochs", type=int, default=10, help="transformer epochs")
    parser.add_argument("--window-size", type=int, default=32)
    parser.add_argument("--threshold-percentile", type=float, default=99.5)
    parser.add_argument("--interval", default=None, help="sampling interval for a PATH dataset")
    parser.add_argument(
        "--vus-max-buffer", type=int, default=None, help="largest VUS buffer (default: window)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results_public.json"))
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    args.detector_list = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = sorted(set(args.detector_list) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {list(DETECTORS)}")
    name = args.dataset.lower()
    if name in SAMPLING_INTERVALS:
        args.root = DATA / name
        args.sampling = SAMPLING_INTERVALS[name]
    else:
        args.root = Path(args.dataset)
        args.sampling = pd.Timedelta(args.interval or "1min")
    if args.interval is not None:
        args.sampling = pd.Timedelta(args.interval)
    if not args.root.is_dir():
        parser.error(f"dataset directory {args.root} does not exist")
    machines = list_machines(args.root)
    if args.machines:
        wanted = [m.strip() for m in args.machines.split(",") if m.strip()]
        missing = sorted(set(wanted) - set(machines))
        if missing:
            parser.error(f"unknown machines {missing}; {args.root} has {machines}")
        machines = wanted
    args.machine_list = machines
    if args.vus_max_buffer is None:
        args.vus_max_buffer = args.window_size
    return args


def metric_attribution(result: ScoreResult, mode: str) -> np.ndarray:
    """``[N, F]`` per-metric window scores: features of the one service, or the services."""
    if mode == "one-service":
        return result.metric_scores[:, 0, :]
    return result.service_scores


def evaluate_detector(name: str, data: MachineData, args: argparse.Namespace) -> dict[str, Any]:
    """Fit on the machine's training file, score its test file, compute every number."""
    started = time.perf_counter()
    history, test = machine_tensors(data, args.sampling, args.mode)
    train, val = chronological_split(history, VALIDATION_FRACTION, args.window_size)
    detector = BENCH.build_detector(name, args, args.seed).fit(train, val)
    result = detector.score(test)
    seconds = time.perf_counter() - started
    scores = point_scores(result.ends, result.window_scores, test.timestamps)
    metric_scores = point_scores(
        result.ends, metric_attribution(result, args.mode), test.timestamps
    )
    record: dict[str, Any] = {
        **point_metrics(data.labels, scores, detector.threshold_, args.vus_max_buffer),
        **root_cause_hit_rates(metric_scores, data.segments),
        "threshold": detector.threshold_,
        "seconds": seconds,
    }
    if name == "transformer":
        record["epochs"] = len(detector.epoch_losses_)
        record["best_epoch"] = detector.best_epoch_
    return record


def summarise(per_machine: dict[str, dict[str, Any]], detectors: Sequence[str]) -> dict[str, Any]:
    """Mean over machines of every numeric entry, per detector."""
    means: dict[str, Any] = {}
    for name in detectors:
        records = [m["detectors"][name] for m in per_machine.values()]
        keys = [k for k, v in records[0].items() if isinstance(v, float | int)]
        means[name] = {
            k: float(np.mean([r[k] for r in records if r.get(k) is not None]))
            if any(r.get(k) is not None for r in records)
            else None
            for k in keys
        }
    return means


def format_table(rows: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """Plain-text table: one row per (machine, detector)."""
    headers = ["machine", "detector", *[h for _, h in TABLE_COLUMNS]]
    cells = [[m, d, *[_cell(r.get(k)) for k, _ in TABLE_COLUMNS]] for m, d, r in rows]
    widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [headers, *cells]
    )


def markdown_table(rows: Sequence[tuple[str, str, dict[str, Any]]]) -> str:
    """The same table in Markdown, for docs/BENCHMARKS.md."""
    headers = ["machine", "detector", *[h for _, h in TABLE_COLUMNS]]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for m, d, r in rows:
        lines.append("| " + " | ".join([m, d, *[_cell(r.get(k)) for k, _ in TABLE_COLUMNS]]) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate, print the tables, write ``--out``; return the JSON payload."""
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    per_machine: dict[str, dict[str, Any]] = {}
    for machine in args.machine_list:
        data = load_machine(args.root, machine)
        entry: dict[str, Any] = {
            "train_steps": int(len(data.train)),
            "test_steps": int(len(data.test)),
            "metrics": data.n_metrics,
            "anomalous_steps": int(data.labels.sum()),
            "anomaly_ratio": float(data.labels.mean()),
            "root_cause_segments": len(data.segments),
            "detectors": {},
        }
        for name in args.detector_list:
            record = evaluate_detector(name, data, args)
            entry["detectors"][name] = record
            print(
                f"[{machine}] {name:<16} AUC-PR {record['auc_pr']:.3f} VUS-PR "
                f"{record['vus_pr']:.3f} ROC {record['roc_auc']:.3f}  {record['seconds']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        per_machine[machine] = entry
    means = summarise(per_machine, args.detector_list)
    rows = [(m, d, e["detectors"][d]) for m, e in per_machine.items() for d in args.detector_list]
    mean_rows = [("mean", d, means[d]) for d in args.detector_list]
    payload: dict[str, Any] = {
        "config": {
            "dataset": args.dataset,
            "root": str(args.root),
            "machines": args.machine_list,
            "mode": args.mode,
            "detectors": args.detector_list,
            "max_epochs": args.max_epochs,
            "window_size": args.window_size,
            "threshold_percentile": args.threshold_percentile,
            "sampling_interval": str(args.sampling),
            "vus_max_buffer": args.vus_max_buffer,
            "validation_fraction": VALIDATION_FRACTION,
            "seed": args.seed,
            "torch_threads": args.torch_threads,
        },
        "code": BENCH.code_version(),
        "per_machine": per_machine,
        "mean": means,
        "wall_seconds": time.perf_counter() - started,
    }
    print(format_table(rows))
    print()
    print(format_table(mean_rows))
    print(
        "AUC-PR = average precision; VUS-PR = volume under the range-PR surface (buffers 0.."
        f"{args.vus_max_buffer}); @thr = persisted {args.threshold_percentile} validation "
        "percentile; bestF1(UB) = best over thresholds (upper bound); PA-F1(legacy) = "
        "point-adjusted best F1 (inflated); HR@P = HitRate@P% of the metric attribution"
    )
    print(f"wall time {payload['wall_seconds']:.1f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=BENCH._json_default), "utf-8")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
