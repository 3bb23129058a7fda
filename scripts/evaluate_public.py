"""Evaluate every detector on public data: server metrics (SMD, ASD) and injected faults (Nezha).

    PYTHONPATH=src .venv/bin/python scripts/evaluate_public.py --dataset smd \\
        --detectors transformer,pca,robust_zscore,isolation_forest,random \\
        --mode one-service --max-epochs 10 --out results_smd.json
    PYTHONPATH=src .venv/bin/python scripts/evaluate_public.py --dataset nezha \\
        --max-epochs 20 --out results_nezha.json

**SMD layout.** ``--dataset`` is ``smd`` / ``asd`` (``../shared/data/<name>`` beside the
repository) or a directory in the same layout (``ml_monitoring_service.public_data``). Per machine,
the training file trains (its last 20 % validates, ``chronological_split``) and the test file is
scored with stride 1. Each window's score is assigned to the window's end step (the first W−1
steps get the first window's score), per-metric scores likewise. Reported per machine and
detector, then the mean over machines: AUC-PR (average precision), VUS-PR and VUS-ROC
(``metrics_vus``, buffers 0 … ``--vus-max-buffer``), ROC AUC, F1 at the operational threshold (the
detector's persisted ``threshold_``), best F1 over thresholds (an upper bound), the legacy
point-adjusted best F1 (inflated; for comparison with old papers only) and HitRate@100 %/150 % of
the per-metric attribution against ``interpretation_label``.

**Nezha layout.** ``--dataset nezha`` (``../shared/data/nezha``) or a directory holding
``rca_data/<day>/`` (``data.pod_recordings``). Every day with a fault list is a case, and nothing
below depends on which days these are:

* the service set is read from the recording: every deployment with a metric file, the columns of
  ``NEZHA_METRICS`` (recorded by Online Boutique and Train Ticket alike) and the call graph of
  ``dependency.csv`` where there is one (no detector uses it, the root-cause ranking does).
  Left out: ``PodSuccessRate(%)`` (0 throughout), ``MemoryUsageRate(%)`` (a level that steps or
  creeps for hours with almost no spread: with it, memory's scaled deviation averaged 437 over
  2022-08-22's scored range against at most 16 for any other metric, and the z-score and PCA
  detectors alerted on every window) and the logs (Nezha kept them only for the minutes around
  each injection, so their mere presence would give the faults away);
* the data path is the daemon's: ``read_pod_recording`` over a time range, ``densify`` on
  ``grid:1min`` (the sampling interval), the last 20 % of the training range validates (early
  stopping, threshold), scaling is fitted on the rest, windows of ``--window-size`` steps (default
  8 for Nezha: about the spacing of the injections, so most windows see one fault at a time);
* training range (``fault_evaluation.training_range``), from the injection times alone: the
  longest stretch at least 15 minutes clear of every injection, preferring one between the first
  and last injection if it lasts an hour (same load as the faults); scored range: from one window
  before the first injection to 15 minutes after the last (``fault_evaluation.RECOVERY``);
* per fault (``fault_evaluation``, where the choice of durations is argued): *detected* when a
  window ending in ``[t, t + 5 min)`` (cut at the next injection) scores above the detector's
  threshold, the *delay* to the first such window end, and the injected service's *rank* by
  the shipped root-cause ranking of those windows (``rootcause``: summed service score, callers
  whose anomaly an earlier-deviating callee explains pushed down; Train Ticket has no call graph,
  so there it is the summed score alone), giving AC@1, AC@3 and Avg@5 (mean of AC@1..5).
  ``zscore_rca`` ranks services by their largest |robust z| (median/IQR of the training part) of
  any metric in the same windows. *Windows*, *alerts*, *quiet* and *false alarms* count the
  scored windows ending outside the training range: all, above threshold, in quiet time, and
  both (false alarms / quiet = false-alarm rate); without them a detector that always alerts
  would look perfect. Faults no window ends in (too
  close to the start of the data) are reported but left out of the rates. Per day and pooled.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ml_monitoring_service import fault_evaluation
from ml_monitoring_service.data.pod_recordings import (
    InjectedFault,
    read_call_graph,
    read_fault_list,
    read_pod_recording,
    recording_services,
)
from ml_monitoring_service.data.schema import TIMESTAMP
from ml_monitoring_service.detectors import (
    ScoreResult,
    TransformerAutoencoderDetector,
    WindowDetector,
)
from ml_monitoring_service.errors import DataValidationError, InsufficientDataError
from ml_monitoring_service.metrics_vus import point_metrics
from ml_monitoring_service.pipeline.training import chronological_split
from ml_monitoring_service.prepare.densify import ServiceTensor, densify
from ml_monitoring_service.prepare.variants import Variant
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
NEZHA = "nezha"
# Metric name -> source column; recorded for every pod of Online Boutique and Train Ticket.
# Not memory: see the module docstring.
NEZHA_METRICS = {
    "cpu": "CpuUsageRate(%)",
    "server_latency_p90": "PodServerLatencyP90(s)",
    "client_latency_p90": "PodClientLatencyP90(s)",
    "workload": "PodWorkload(Ops)",
    "network_in": "NetworkReceiveBytes",
    "network_out": "NetworkTransmitBytes",
}
NEZHA_STEP = pd.Timedelta(minutes=1)  # the recordings' sampling interval
NEZHA_VARIANT = Variant("grid", NEZHA_STEP)
NEZHA_WINDOW = 8
ZSCORE_RCA = "zscore_rca"
# (JSON key, header) of the printed tables.
NEZHA_COLUMNS = (
    ("scorable", "faults"),
    ("detection_rate", "detected"),
    ("mean_delay_min", "delay min"),
    ("ac@1", "AC@1"),
    ("ac@3", "AC@3"),
    ("avg@5", "Avg@5"),
    ("windows", "windows"),
    ("alerts", "alerts"),
    ("quiet_windows", "quiet"),
    ("false_alarms", "false alarms"),
    ("seconds", "fit+score s"),
)
SMD_COLUMNS = (
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
    parser.add_argument(
        "--dataset", required=True, help="smd, asd, nezha, or a directory in either layout"
    )
    parser.add_argument("--machines", default=None, help="SMD layout: comma-separated; default all")
    parser.add_argument("--days", default=None, help="Nezha layout: comma-separated; default all")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help=f"from {DETECTORS}")
    parser.add_argument("--mode", choices=MODES, default="one-service")
    parser.add_argument("--max-epochs", type=int, default=10, help="transformer epochs")
    parser.add_argument(
        "--window-size", type=int, default=None, help=f"default 32, Nezha {NEZHA_WINDOW}"
    )
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
    args.root = DATA / name if name in (*SAMPLING_INTERVALS, NEZHA) else Path(args.dataset)
    if not args.root.is_dir():
        parser.error(f"dataset directory {args.root} does not exist")
    args.nezha = (args.root / "rca_data").is_dir()
    if args.window_size is None:
        args.window_size = NEZHA_WINDOW if args.nezha else 32
    try:
        if args.nezha:
            args.day_list = _choose(nezha_days(args.root), args.days, "days")
        else:
            _smd_args(args, name)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _smd_args(args: argparse.Namespace, name: str) -> None:
    """Sampling interval, machines and VUS buffer of an SMD-layout dataset."""
    args.sampling = SAMPLING_INTERVALS.get(name, pd.Timedelta(args.interval or "1min"))
    if args.interval is not None:
        args.sampling = pd.Timedelta(args.interval)
    args.machine_list = _choose(list_machines(args.root), args.machines, "machines")
    if args.vus_max_buffer is None:
        args.vus_max_buffer = args.window_size


def _choose(available: list[str], wanted: str | None, what: str) -> list[str]:
    """All of ``available``, or the comma-separated ``wanted`` ones (each must exist)."""
    if not wanted:
        return available
    chosen = [w.strip() for w in wanted.split(",") if w.strip()]
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"unknown {what} {missing}; available: {available}")
    return chosen


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
    return {**record, **training_info(detector)}


def training_info(detector: WindowDetector) -> dict[str, int]:
    """Epochs run and the best one, for detectors that train for epochs (the transformer)."""
    if not isinstance(detector, TransformerAutoencoderDetector):
        return {}
    return {"epochs": len(detector.epoch_losses_), "best_epoch": detector.best_epoch_}


def machine_means(
    per_machine: dict[str, dict[str, Any]], detectors: Sequence[str]
) -> dict[str, Any]:
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


def format_table(
    rows: Sequence[tuple[str, str, dict[str, Any]]],
    columns: Sequence[tuple[str, str]] = SMD_COLUMNS,
    case: str = "machine",
) -> str:
    """Plain-text table: one row per (case, detector)."""
    return _aligned(_cells(rows, columns, case))


def markdown_table(
    rows: Sequence[tuple[str, str, dict[str, Any]]],
    columns: Sequence[tuple[str, str]] = SMD_COLUMNS,
    case: str = "machine",
) -> str:
    """The same table in Markdown, for docs/BENCHMARKS.md."""
    headers, *cells = _cells(rows, columns, case)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def _cells(
    rows: Sequence[tuple[str, str, dict[str, Any]]], columns: Sequence[tuple[str, str]], case: str
) -> list[list[str]]:
    """Header row, then one row of formatted cells per (case, detector, record)."""
    headers = [case, "detector", *[h for _, h in columns]]
    return [headers, *[[m, d, *[_cell(r.get(k)) for k, _ in columns]] for m, d, r in rows]]


def _aligned(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def run_smd(args: argparse.Namespace) -> dict[str, Any]:
    """Every detector on every machine of an SMD-layout dataset; prints the tables."""
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
    means = machine_means(per_machine, args.detector_list)
    rows = [(m, d, e["detectors"][d]) for m, e in per_machine.items() for d in args.detector_list]
    print(format_table(rows))
    print()
    print(format_table([("mean", d, means[d]) for d in args.detector_list]))
    print(
        "AUC-PR = average precision; VUS-PR = volume under the range-PR surface (buffers 0.."
        f"{args.vus_max_buffer}); @thr = persisted {args.threshold_percentile} validation "
        "percentile; bestF1(UB) = best over thresholds (upper bound); PA-F1(legacy) = "
        "point-adjusted best F1 (inflated); HR@P = HitRate@P% of the metric attribution"
    )
    return {
        "config": {
            "machines": args.machine_list,
            "mode": args.mode,
            "sampling_interval": str(args.sampling),
            "vus_max_buffer": args.vus_max_buffer,
        },
        "per_machine": per_machine,
        "mean": means,
    }


# ------------------------------------------------------------------------------------ Nezha


def nezha_days(root: Path) -> list[str]:
    """Days under ``rca_data/`` with a fault list (a day without one cannot be judged)."""
    days = sorted(p for p in (root / "rca_data").iterdir() if p.is_dir())
    usable = [p.name for p in days if any(p.glob("*fault_list.json"))]
    skipped = [p.name for p in days if p.name not in usable]
    if skipped:
        print(f"skipping days without a fault list: {skipped}", file=sys.stderr)
    return usable


@dataclass(frozen=True)
class NezhaDay:
    """One day's service set, faults, ranges and tensors: the same for every detector."""

    services: tuple[str, ...]
    call_graph: tuple[tuple[str, str], ...]
    faults: tuple[InjectedFault, ...]
    training_range: tuple[pd.Timestamp, pd.Timestamp]
    scored_range: tuple[pd.Timestamp, pd.Timestamp]
    train: ServiceTensor
    val: ServiceTensor
    scored: ServiceTensor


def load_nezha_day(directory: Path, window_size: int) -> NezhaDay:
    """Service set from the recording; training and scored ranges from the injection times."""
    faults = read_fault_list(directory)
    if not faults:
        raise DataValidationError(f"{directory}: the fault list is empty")
    services = recording_services(directory)
    injections = [f.time for f in faults]
    stamps = read_pod_recording(directory, services, NEZHA_METRICS, logs=False)[TIMESTAMP]
    first, stop = stamps.iloc[0], stamps.iloc[-1] + NEZHA_STEP
    training = fault_evaluation.training_range(injections, first, stop)
    scored = (
        max(first, injections[0] - window_size * NEZHA_STEP),
        min(stop, injections[-1] + fault_evaluation.RECOVERY),
    )
    history = _nezha_tensor(directory, services, training)
    train, val = chronological_split(history, VALIDATION_FRACTION, window_size)
    return NezhaDay(
        services=services,
        call_graph=read_call_graph(directory, services),
        faults=faults,
        training_range=training,
        scored_range=scored,
        train=train,
        val=val,
        scored=_nezha_tensor(directory, services, scored),
    )


def _nezha_tensor(
    directory: Path, services: Sequence[str], time_range: tuple[pd.Timestamp, pd.Timestamp]
) -> ServiceTensor:
    """What the daemon does with a ``pod_recording`` file source and a time range."""
    frame = read_pod_recording(directory, services, NEZHA_METRICS, *time_range, logs=False)
    return densify(frame, services, list(NEZHA_METRICS), NEZHA_VARIANT)


def evaluate_nezha_day(day: NezhaDay, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fit every detector on the day's training range, judge it on every fault."""
    windows = fault_evaluation.fault_windows(day.faults)
    injections = [f.time for f in day.faults]
    outcomes: dict[str, list[fault_evaluation.FaultOutcome]] = {}
    detectors: dict[str, dict[str, Any]] = {}
    for name in args.detector_list:
        started = time.perf_counter()
        detector = BENCH.build_detector(name, args, args.seed).fit(day.train, day.val)
        result = detector.score(day.scored)
        outcomes[name] = [fault_evaluation.judge(result, w, day.call_graph) for w in windows]
        detectors[name] = {
            **fault_evaluation.summarise(outcomes[name]),
            **fault_evaluation.alarm_counts(result, injections, day.training_range),
            "threshold": detector.threshold_,
            "seconds": time.perf_counter() - started,
            **training_info(detector),
        }
        _progress(label, name, detectors[name])
    zscore = fault_evaluation.zscore_ranks(day.train, day.scored, windows, list(NEZHA_METRICS))
    faults = [
        {
            "time": fault.time,
            "service": fault.service,
            "pod": fault.pod,
            "kind": fault.kind,
            "window_stop": window.stop,
            **{name: asdict(found[i]) for name, found in outcomes.items()},
            ZSCORE_RCA: {"rank": zscore[i]},
        }
        for i, (fault, window) in enumerate(zip(day.faults, windows, strict=True))
    ]
    return {
        "services": list(day.services),
        "call_graph": [list(edge) for edge in day.call_graph],
        "training_range": list(day.training_range),
        "scored_range": list(day.scored_range),
        "train_steps": day.train.n_steps,
        "validation_steps": day.val.n_steps,
        "scored_steps": day.scored.n_steps,
        "faults": faults,
        "detectors": {**detectors, ZSCORE_RCA: fault_evaluation.accuracy_at_k(zscore)},
    }


def pooled(per_day: dict[str, dict[str, Any]], detectors: Sequence[str]) -> dict[str, Any]:
    """Every fault of every day judged together; alert counts and seconds summed."""
    faults = [f for day in per_day.values() for f in day["faults"]]
    result: dict[str, Any] = {}
    for name in detectors:
        outcomes = [fault_evaluation.FaultOutcome(**f[name]) for f in faults]
        totals = {
            key: sum(day["detectors"][name][key] for day in per_day.values())
            for key in ("windows", "alerts", "quiet_windows", "false_alarms", "seconds")
        }
        result[name] = {**fault_evaluation.summarise(outcomes), **totals}
    result[ZSCORE_RCA] = fault_evaluation.accuracy_at_k([f[ZSCORE_RCA]["rank"] for f in faults])
    return result


def fault_table(per_day: dict[str, dict[str, Any]], detectors: Sequence[str]) -> str:
    """One row per fault: per detector ``hit <delay>m #<rank>`` or ``miss #<rank>``."""
    names = [*detectors, ZSCORE_RCA]
    rows = [["day", "injected", "service", "kind", *names]]
    for label, day in per_day.items():
        for f in day["faults"]:
            cells = [_outcome_cell(f[name]) for name in detectors]
            rows.append(
                [
                    label,
                    f"{f['time']:%H:%M:%S}",
                    f["service"],
                    f["kind"],
                    *cells,
                    _rank(f[ZSCORE_RCA]),
                ]
            )
    return _aligned(rows)


def _outcome_cell(outcome: dict[str, Any]) -> str:
    if outcome["detected"] is None:
        return "n/a"
    if outcome["detected"]:
        return f"hit {outcome['delay_minutes']:.1f}m {_rank(outcome)}"
    return f"miss {_rank(outcome)}"


def _rank(outcome: dict[str, Any]) -> str:
    return "#?" if outcome["rank"] is None else f"#{outcome['rank']}"


def _progress(label: str, name: str, record: dict[str, Any]) -> None:
    print(
        f"[{label}] {name:<16} detected {record['detected']}/{record['scorable']} "
        f"AC@1 {_cell(record['ac@1'])} false alarms {record['false_alarms']}  "
        f"{record['seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def run_nezha(args: argparse.Namespace) -> dict[str, Any]:
    """Every detector on every Nezha day; prints the per-fault, per-day and pooled tables."""
    per_day: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for label in args.day_list:
        try:
            day = load_nezha_day(args.root / "rca_data" / label, args.window_size)
        except InsufficientDataError as exc:
            skipped[label] = str(exc)
            print(f"[{label}] skipped: {exc}", file=sys.stderr)
            continue
        per_day[label] = evaluate_nezha_day(day, label, args)
    overall = pooled(per_day, args.detector_list)
    names = [*args.detector_list, ZSCORE_RCA]
    rows = [(label, n, day["detectors"][n]) for label, day in per_day.items() for n in names]
    print(fault_table(per_day, args.detector_list))
    print()
    print(format_table(rows, NEZHA_COLUMNS, "day"))
    print()
    print(format_table([("all", n, overall[n]) for n in names], NEZHA_COLUMNS, "day"))
    minutes = pd.Timedelta(minutes=1)
    print(
        "detected = share of faults with a window above threshold ending within "
        f"{fault_evaluation.FAULT_WINDOW / minutes:.0f} min of the injection; delay = to the "
        "first such window end; AC@k = injected service in the top k of those windows' service "
        "ranking; Avg@5 = mean AC@1..5; windows/alerts = scored windows (above threshold) "
        "outside the training range; quiet = windows not ending within "
        f"{fault_evaluation.RECOVERY / minutes:.0f} min after an injection; false alarms = "
        "alerting quiet windows"
    )
    return {
        "config": {"days": args.day_list, "metrics": NEZHA_METRICS, "variant": NEZHA_VARIANT.label},
        "per_day": per_day,
        "skipped_days": skipped,
        "overall": overall,
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate, print the tables, write ``--out``; return the JSON payload."""
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    results = run_nezha(args) if args.nezha else run_smd(args)
    payload: dict[str, Any] = {
        **results,
        "config": {
            "dataset": args.dataset,
            "root": str(args.root),
            "detectors": args.detector_list,
            "max_epochs": args.max_epochs,
            "window_size": args.window_size,
            "threshold_percentile": args.threshold_percentile,
            "validation_fraction": VALIDATION_FRACTION,
            "seed": args.seed,
            "torch_threads": args.torch_threads,
            **results["config"],
        },
        "code": BENCH.code_version(),
        "wall_seconds": time.perf_counter() - started,
    }
    print(f"wall time {payload['wall_seconds']:.1f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=BENCH._json_default), "utf-8")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
