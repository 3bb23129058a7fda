"""Evaluate every detector on public data: server metrics (SMD, ASD) and injected faults (Nezha).

    python scripts/evaluate_public.py --dataset smd|asd --path DIR [--machines a,b] \\
        --out results.json
    python scripts/evaluate_public.py --dataset nezha --path DIR [--machines DAY,DAY] \\
        --out results.json

Run it with the project's interpreter (``.venv/bin/python``); no ``PYTHONPATH`` is needed: the
script puts this checkout's ``src/`` first on ``sys.path`` before importing the package (the
*bootstrap* below the imports), so the code measured is always the code beside the script, even
where the package is not installed.

**Arguments.** ``--dataset`` names the layout: ``smd`` and ``asd`` are the SMD layout
(``ml_monitoring_service.public_data``; sampling interval 1 min and 5 min, ``--interval``
overrides), ``nezha`` the Nezha layout (``DIR/rca_data/<day>/``, or ``DIR`` holding the day
directories itself). ``--path DIR`` is the dataset root; without it ``../shared/data/<dataset>``
beside the repository. (A directory given as ``--dataset DIR`` still works: the layout is then
detected, SMD at 1 min unless ``--interval``.) ``--machines a,b`` picks machines/servers, or days
for Nezha (``--days`` is an alias); default all, and an unknown name is an error that lists the
available ones. ``--detectors`` (default all five): ``ours`` (the transformer autoencoder),
``pca``, ``iforest`` (isolation forest), ``zscore`` (robust z-score), ``random``; the long names
``transformer``, ``isolation_forest``, ``robust_zscore`` are accepted as aliases. ``--mode``
(SMD layout): ``one-service`` (default: each machine is one service with F features) or
``per-metric`` (F single-metric services, so the transformer's cross-service attention relates
the metrics). ``--max-epochs`` (transformer): default 10 for the SMD layout and 200 for Nezha,
the settings of docs/BENCHMARKS.md sections 3 and 4.

**Runtime** with all five detectors, default settings, one PyTorch thread on a 2-core machine:
about 40 s per SMD machine (~24k train + ~24k test rows, 38 metrics), 15 s per ASD server, 1–2
min per Online Boutique day (10 services) and about 3 min for the Train Ticket day (46 services,
170k log lines mined once per fault for all detectors); the transformer takes most of it.

**Output.** Plain-text tables per machine and of the means on stdout, then the means as a
Markdown table; progress on stderr; the JSON at ``--out``:

* ``summary.<detector>.<metric>``: the mean over machines (Nezha: days) of each number, with
  ``n_machines`` (machines the mean is over), ``n_failed`` and ``n_machines_by_metric`` (a
  metric can be undefined on a machine, e.g. a HitRate without interpretation labels);
* ``machines.<name>.<detector>.<metric>``: per machine (Nezha: per day);
* detectors ``ours``, ``pca``, ``iforest``, ``zscore``, ``random``; SMD-layout metrics
  ``auc_pr``, ``vus_pr``, ``roc_auc``, ``f1_operational`` (F1 at the detector's persisted
  threshold), ``best_f1`` (best over thresholds: an upper bound), ``hitrate_100``,
  ``hitrate_150``, plus ``vus_roc``, ``range_pr_auc_buffer0``, ``precision_operational``,
  ``recall_operational``, ``pa_best_f1_legacy`` (point-adjusted best F1: a legacy column,
  inflated), ``threshold``, ``seconds`` (fit + score), ``epochs`` / ``best_epoch`` (``ours``);
* Nezha metrics ``detection_rate``, ``ac_at_1``, ``ac_at_3``, plus ``ac_at_5``, ``avg_at_5``,
  ``mean_delay_min``, ``faults``, ``scorable``, ``detected``, ``windows``, ``alerts``,
  ``quiet_windows``, ``false_alarms``, ``threshold``, ``seconds``; and the entry ``zscore_rca``
  (the z-score root-cause ranking, not a detector: ``ac_at_k`` / ``avg_at_5`` only).
  ``pooled.<detector>`` judges every fault of every day together (the numbers of
  docs/BENCHMARKS.md section 4); ``details.<day>`` has the services, call graph, ranges and the
  outcome of every fault;
* a machine or detector that fails (too few rows for a window, unreadable files, ...) gets
  ``{"error": "..."}`` in its place in ``machines`` and in ``errors.<name>.<detector>``, and is
  left out of the means (``n_failed``); never dropped silently. The exit status is 1 only when
  nothing could be evaluated;
* ``details.<name>`` (row counts, anomaly ratio, ...), ``config`` (every setting), ``code``
  (commit, and whether ``src/`` differs from it), ``wall_seconds``.

**SMD layout** (``--dataset smd`` / ``asd``). Per machine, the training file trains (its last
20 % validates, ``chronological_split``) and the test file is scored with stride 1. Each
window's score is assigned to the window's end step (the first W−1 steps get the first window's
score), per-metric scores likewise. Reported per machine and
detector, then the mean over machines: AUC-PR (average precision), VUS-PR and VUS-ROC
(``metrics_vus``, buffers 0 … ``--vus-max-buffer``), ROC AUC, F1 at the operational threshold (the
detector's persisted ``threshold_``), best F1 over thresholds (an upper bound), the legacy
point-adjusted best F1 (inflated; for comparison with old papers only) and HitRate@100 %/150 % of
the per-metric attribution against ``interpretation_label``.

**Nezha layout** (``--dataset nezha``, read by ``data.pod_recordings``). Every day with a fault
list is a case, and nothing below depends on which days these are:

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

# Bootstrap: this checkout's src/ goes first on sys.path, so `python scripts/evaluate_public.py`
# runs without PYTHONPATH and evaluates the code beside it even where the package is not installed.
REPO = Path(__file__).resolve().parents[1]
if (REPO / "src").is_dir() and str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from ml_monitoring_service import fault_evaluation  # noqa: E402
from ml_monitoring_service.benchmarking import (  # noqa: E402
    build_benchmark_detector,
    code_version,
    json_default,
)
from ml_monitoring_service.data.pod_recordings import (  # noqa: E402
    INBOUND_NETWORK_DELAY,
    InjectedFault,
    has_edge_latencies,
    read_call_graph,
    read_fault_list,
    read_pod_recording,
    recording_services,
)
from ml_monitoring_service.data.schema import SEVERITY, TIMESTAMP  # noqa: E402
from ml_monitoring_service.detectors import (  # noqa: E402
    ScoreResult,
    TransformerAutoencoderDetector,
    WindowDetector,
)
from ml_monitoring_service.errors import DataValidationError  # noqa: E402
from ml_monitoring_service.explain.log_evidence import LogEvidence  # noqa: E402
from ml_monitoring_service.metric_roles import MetricRoles  # noqa: E402
from ml_monitoring_service.metrics_vus import point_metrics  # noqa: E402
from ml_monitoring_service.pipeline.training import chronological_split  # noqa: E402
from ml_monitoring_service.prepare.densify import (  # noqa: E402
    MAX_COUNT_HORIZON,
    ServiceTensor,
    densify,
    fit_count_horizon,
)
from ml_monitoring_service.prepare.variants import Variant  # noqa: E402
from ml_monitoring_service.public_data import (  # noqa: E402
    MODES,
    SAMPLING_INTERVALS,
    MachineData,
    list_machines,
    load_machine,
    machine_tensors,
    point_scores,
    root_cause_hit_rates,
)

DATA = REPO.parent / "shared" / "data"
VALIDATION_FRACTION = 0.2
NEZHA = "nezha"
LAYOUTS = (*SAMPLING_INTERVALS, NEZHA)  # smd, asd, nezha
# Detector name in the JSON -> its name in ml_monitoring_service.benchmarking.
IMPLEMENTATIONS = {
    "ours": "transformer",
    "pca": "pca",
    "iforest": "isolation_forest",
    "zscore": "robust_zscore",
    "random": "random",
}
DETECTORS: tuple[str, ...] = tuple(IMPLEMENTATIONS)
ALIASES = {**{v: k for k, v in IMPLEMENTATIONS.items()}, **{k: k for k in IMPLEMENTATIONS}}
DEFAULT_EPOCHS = {"smd-layout": 10, NEZHA: 200}  # docs/BENCHMARKS.md sections 3 and 4
SMD_METRICS = (
    "auc_pr",
    "vus_pr",
    "roc_auc",
    "f1_operational",
    "best_f1",
    "hitrate_100",
    "hitrate_150",
)
NEZHA_SUMMARY_METRICS = ("detection_rate", "ac_at_1", "ac_at_3")
# Keys of the library's records -> keys of the JSON.
RENAMED = {
    "f1_at_threshold": "f1_operational",
    "precision_at_threshold": "precision_operational",
    "recall_at_threshold": "recall_operational",
    "hitrate@100": "hitrate_100",
    "hitrate@150": "hitrate_150",
    "ac@1": "ac_at_1",
    "ac@3": "ac_at_3",
    "ac@5": "ac_at_5",
    "avg@5": "avg_at_5",
}
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
# Derived from the per-edge latency files where a recording has them (Online Boutique does,
# Train Ticket does not): see ``data.pod_recordings.INBOUND_NETWORK_DELAY``.
NEZHA_EDGE_METRICS = {"network_delay_in": INBOUND_NETWORK_DELAY}
# What a pod measures about its own outbound calls (it rises with a slow callee), and what counts
# its traffic (it moves wherever the load does): ``metric_roles.MetricRoles``.
NEZHA_ROLES = MetricRoles(
    client=("client_latency_p90",), traffic=("workload", "network_in", "network_out")
)
NEZHA_STEP = pd.Timedelta(minutes=1)  # the recordings' sampling interval
NEZHA_VARIANT = Variant("grid", NEZHA_STEP)
NEZHA_WINDOW = 8
ZSCORE_RCA = "zscore_rca"
# (JSON key, header) of the printed tables.
NEZHA_COLUMNS = (
    ("scorable", "faults"),
    ("detection_rate", "detected"),
    ("mean_delay_min", "delay min"),
    ("ac_at_1", "AC@1"),
    ("ac_at_3", "AC@3"),
    ("avg_at_5", "Avg@5"),
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
    ("f1_operational", "F1@thr"),
    ("best_f1", "bestF1(UB)"),
    ("pa_best_f1_legacy", "PA-F1(legacy)"),
    ("hitrate_100", "HR@100"),
    ("hitrate_150", "HR@150"),
    ("seconds", "fit+score s"),
)
ERROR = "error"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        required=True,
        help=f"layout: {', '.join(LAYOUTS)} (smd/asd: SMD layout); a directory still works",
    )
    parser.add_argument(
        "--path", type=Path, default=None, help="dataset root (default ../shared/data/<dataset>)"
    )
    parser.add_argument(
        "--machines", default=None, help="comma-separated machines (Nezha: days); default all"
    )
    parser.add_argument("--days", default=None, help="Nezha: alias of --machines")
    parser.add_argument(
        "--detectors",
        default=",".join(DETECTORS),
        help=f"comma-separated, from {list(DETECTORS)} (aliases {list(IMPLEMENTATIONS.values())})",
    )
    parser.add_argument(
        "--mode", choices=MODES, default="one-service", help="SMD layout (default one-service)"
    )
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="transformer epochs (default 10, Nezha 200)"
    )
    parser.add_argument(
        "--window-size", type=int, default=None, help=f"default 32, Nezha {NEZHA_WINDOW}"
    )
    parser.add_argument("--threshold-percentile", type=float, default=99.5)
    parser.add_argument("--interval", default=None, help="sampling interval (SMD layout)")
    parser.add_argument(
        "--vus-max-buffer", type=int, default=None, help="largest VUS buffer (default: window)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results_public.json"))
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        args.detector_list = _detectors(args.detectors)
        _dataset_args(args)
        if args.machines and args.days:
            raise ValueError("give --machines or --days, not both")
        wanted = args.machines or args.days
        if args.nezha:
            args.machine_list = _choose(nezha_days(args.days_dir), wanted, "days")
        else:
            args.machine_list = _choose(list_machines(args.root), wanted, "machines")
    except (ValueError, DataValidationError) as exc:
        parser.error(str(exc))
    if args.window_size is None:
        args.window_size = NEZHA_WINDOW if args.nezha else 32
    if args.max_epochs is None:
        args.max_epochs = DEFAULT_EPOCHS[args.layout if args.nezha else "smd-layout"]
    if args.vus_max_buffer is None:
        args.vus_max_buffer = args.window_size
    return args


def _detectors(text: str) -> list[str]:
    """JSON names of the comma-separated detectors (long names are aliases), in order, once."""
    chosen: list[str] = []
    for name in (d.strip() for d in text.split(",")):
        if not name:
            continue
        if name not in ALIASES:
            raise ValueError(f"unknown detector {name!r}; choose from {list(DETECTORS)}")
        if ALIASES[name] not in chosen:
            chosen.append(ALIASES[name])
    if not chosen:
        raise ValueError("no detectors given")
    return chosen


def _dataset_args(args: argparse.Namespace) -> None:
    """``layout``, ``root``, ``nezha``, ``days_dir`` and ``sampling`` from --dataset/--path."""
    name = args.dataset.lower()
    if name in LAYOUTS:
        args.layout = name
        args.root = args.path if args.path is not None else DATA / name
    elif args.path is not None:
        raise ValueError(f"with --path, --dataset names the layout: one of {list(LAYOUTS)}")
    else:  # the older form: --dataset DIR, layout detected
        args.root = Path(args.dataset)
        args.layout = None
    if not args.root.is_dir():
        raise ValueError(f"dataset directory {args.root} does not exist")
    args.days_dir = _nezha_days_dir(args.root)
    if args.layout is None:
        args.layout = NEZHA if args.days_dir is not None else "smd-layout"
    args.nezha = args.layout == NEZHA
    if args.nezha and args.days_dir is None:
        raise ValueError(
            f"{args.root} is not in the Nezha layout: no rca_data/<day>/ with a *fault_list.json"
        )
    if args.interval is not None:
        args.sampling = pd.Timedelta(args.interval)
    else:
        args.sampling = SAMPLING_INTERVALS.get(args.layout, pd.Timedelta(minutes=1))


def _nezha_days_dir(root: Path) -> Path | None:
    """``root/rca_data``, or ``root`` itself when it holds the day directories; else ``None``."""
    for candidate in (root / "rca_data", root):
        if candidate.is_dir() and any(
            any(day.glob("*fault_list.json")) for day in candidate.iterdir() if day.is_dir()
        ):
            return candidate
    return None


def _choose(available: list[str], wanted: str | None, what: str) -> list[str]:
    """All of ``available``, or the comma-separated ``wanted`` ones (each must exist)."""
    if not available:
        raise ValueError(f"no {what} found")
    if not wanted:
        return available
    chosen = list(dict.fromkeys(w.strip() for w in wanted.split(",") if w.strip()))
    missing = [w for w in chosen if w not in available]
    if missing:
        raise ValueError(f"unknown {what} {missing}; available: {available}")
    return chosen


def _renamed(record: dict[str, Any]) -> dict[str, Any]:
    return {RENAMED.get(k, k): v for k, v in record.items()}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def metric_attribution(result: ScoreResult, mode: str) -> np.ndarray:
    """``[N, F]`` per-metric window scores: features of the one service, or the services."""
    if mode == "one-service":
        return result.metric_scores[:, 0, :]
    return result.service_scores


def build_detector(name: str, args: argparse.Namespace) -> WindowDetector:
    """The detector ``name`` (a JSON name), built as the synthetic benchmark builds it."""
    return build_benchmark_detector(
        IMPLEMENTATIONS[name],
        window_size=args.window_size,
        threshold_percentile=args.threshold_percentile,
        max_epochs=args.max_epochs,
        seed=args.seed,
    )


def evaluate_detector(name: str, data: MachineData, args: argparse.Namespace) -> dict[str, Any]:
    """Fit on the machine's training file, score its test file, compute every number."""
    started = time.perf_counter()
    history, test = machine_tensors(data, args.sampling, args.mode)
    train, val = chronological_split(history, VALIDATION_FRACTION, args.window_size)
    detector = build_detector(name, args).fit(train, val)
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
    return _renamed({**record, **training_info(detector)})


def training_info(detector: WindowDetector) -> dict[str, int]:
    """Epochs run and the best one, for detectors that train for epochs (the transformer)."""
    if not isinstance(detector, TransformerAutoencoderDetector):
        return {}
    return {"epochs": len(detector.epoch_losses_), "best_epoch": detector.best_epoch_}


def machine_means(
    machines: dict[str, dict[str, Any]], detectors: Sequence[str], required: Sequence[str]
) -> dict[str, Any]:
    """Per detector, the mean over machines of every numeric entry; failed machines left out.

    ``n_machines``: machines the detector was evaluated on; ``n_failed``: machines where it
    failed; ``n_machines_by_metric``: machines a metric is defined on (``None`` values, e.g. a
    HitRate without interpretation labels, are left out of that metric's mean).
    """
    means: dict[str, Any] = {}
    for name in detectors:
        entries = [m[name] for m in machines.values() if name in m]
        records = [r for r in entries if ERROR not in r]
        keys = list(required) if not records else []
        for record in records:
            keys += [
                k
                for k, v in record.items()
                if isinstance(v, float | int) and not isinstance(v, bool) and k not in keys
            ]
        summary: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for key in keys:
            values = [r[key] for r in records if r.get(key) is not None]
            summary[key] = float(np.mean(values)) if values else None
            counts[key] = len(values)
        means[name] = {
            **summary,
            "n_machines": len(records),
            "n_failed": len(entries) - len(records),
            "n_machines_by_metric": {k: counts[k] for k in required if k in counts},
        }
    return means


def errors_of(machines: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``{machine: {detector: error}}`` of every failed evaluation."""
    found: dict[str, dict[str, str]] = {}
    for machine, entry in machines.items():
        failed = {d: r[ERROR] for d, r in entry.items() if ERROR in r}
        if failed:
            found[machine] = failed
    return found


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


def _print_tables(
    machines: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    names: Sequence[str],
    columns: Sequence[tuple[str, str]],
    case: str,
) -> None:
    """Per-machine table, the means as text and as Markdown, and every failure."""
    rows = [
        (m, d, entry[d])
        for m, entry in machines.items()
        for d in names
        if d in entry and ERROR not in entry[d]
    ]
    if rows:
        print(format_table(rows, columns, case))
        print()
    means = [(f"mean of {summary[d]['n_machines']}", d, summary[d]) for d in names]
    print(format_table(means, columns, case))
    print()
    print(markdown_table(means, columns, case))
    for machine, failed in errors_of(machines).items():
        if len(failed) == len(machines[machine]) and len(set(failed.values())) == 1:
            failed = {"all": next(iter(failed.values()))}  # the machine itself failed
        for detector, message in failed.items():
            print(f"FAILED [{machine}] {detector}: {message}")


def run_smd(args: argparse.Namespace) -> dict[str, Any]:
    """Every detector on every machine of an SMD-layout dataset; prints the tables."""
    machines: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    for machine in args.machine_list:
        try:
            data = load_machine(args.root, machine)
        except Exception as exc:  # reported per machine, the others still run
            print(f"[{machine}] failed to load: {_error(exc)}", file=sys.stderr, flush=True)
            machines[machine] = {d: {ERROR: _error(exc)} for d in args.detector_list}
            continue
        details[machine] = {
            "train_steps": int(len(data.train)),
            "test_steps": int(len(data.test)),
            "metrics": data.n_metrics,
            "anomalous_steps": int(data.labels.sum()),
            "anomaly_ratio": float(data.labels.mean()),
            "root_cause_segments": len(data.segments),
        }
        machines[machine] = {}
        for name in args.detector_list:
            try:
                record = evaluate_detector(name, data, args)
            except Exception as exc:  # e.g. too few rows for a window: reported, not dropped
                record = {ERROR: _error(exc)}
                print(f"[{machine}] {name:<8} FAILED {record[ERROR]}", file=sys.stderr)
            else:
                print(
                    f"[{machine}] {name:<8} AUC-PR {record['auc_pr']:.3f} VUS-PR "
                    f"{record['vus_pr']:.3f} ROC {record['roc_auc']:.3f}  "
                    f"{record['seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            machines[machine][name] = record
    summary = machine_means(machines, args.detector_list, SMD_METRICS)
    _print_tables(machines, summary, args.detector_list, SMD_COLUMNS, "machine")
    print(
        "AUC-PR = average precision; VUS-PR = volume under the range-PR surface (buffers 0.."
        f"{args.vus_max_buffer}); @thr = persisted {args.threshold_percentile} validation "
        "percentile; bestF1(UB) = best over thresholds (upper bound); PA-F1(legacy) = "
        "point-adjusted best F1 (inflated); HR@P = HitRate@P% of the metric attribution"
    )
    return {
        "summary": summary,
        "machines": machines,
        "details": details,
        "config": {
            "mode": args.mode,
            "sampling_interval": str(args.sampling),
            "vus_max_buffer": args.vus_max_buffer,
        },
    }


# ------------------------------------------------------------------------------------ Nezha


def nezha_days(days_dir: Path) -> list[str]:
    """Days in ``days_dir`` with a fault list (a day without one cannot be judged)."""
    days = sorted(p for p in days_dir.iterdir() if p.is_dir())
    usable = [p.name for p in days if any(p.glob("*fault_list.json"))]
    skipped = [p.name for p in days if p.name not in usable]
    if skipped:
        print(f"skipping days without a fault list: {skipped}", file=sys.stderr)
    return usable


@dataclass(frozen=True)
class NezhaDay:
    """One day's service set, faults, ranges and tensors: the same for every detector."""

    services: tuple[str, ...]
    metrics: dict[str, str]  # metric name -> source column
    call_graph: tuple[tuple[str, str], ...]
    faults: tuple[InjectedFault, ...]
    training_range: tuple[pd.Timestamp, pd.Timestamp]
    scored_range: tuple[pd.Timestamp, pd.Timestamp]
    train: ServiceTensor
    val: ServiceTensor
    scored: ServiceTensor
    logs: pd.DataFrame  # the scored range's log events, for the root-cause ranking only


def load_nezha_day(directory: Path, window_size: int) -> NezhaDay:
    """Service set from the recording; training and scored ranges from the injection times."""
    faults = read_fault_list(directory)
    if not faults:
        raise DataValidationError(f"{directory}: the fault list is empty")
    services = recording_services(directory)
    metrics = nezha_metrics(directory)
    injections = [f.time for f in faults]
    stamps = read_pod_recording(directory, services, NEZHA_METRICS, logs=False)[TIMESTAMP]
    first, stop = stamps.iloc[0], stamps.iloc[-1] + NEZHA_STEP
    training = fault_evaluation.training_range(injections, first, stop)
    scored = (
        max(first, injections[0] - window_size * NEZHA_STEP),
        min(stop, injections[-1] + fault_evaluation.RECOVERY),
    )
    training_frame = _nezha_frame(directory, services, metrics, training)
    horizon = fit_count_horizon(training_frame, services)
    history = _nezha_tensor(training_frame, services, metrics, training[0], horizon)
    train, val = chronological_split(history, VALIDATION_FRACTION, window_size)
    return NezhaDay(
        services=services,
        metrics=metrics,
        call_graph=read_call_graph(directory, services),
        faults=faults,
        training_range=training,
        scored_range=scored,
        train=train,
        val=val,
        scored=_nezha_tensor(
            _nezha_frame(directory, services, metrics, scored),
            services,
            metrics,
            scored[0],
            horizon,
        ),
        logs=_nezha_logs(directory, services, scored),
    )


def nezha_metrics(directory: Path) -> dict[str, str]:
    """``NEZHA_METRICS``, plus ``NEZHA_EDGE_METRICS`` where the recording has edge latencies."""
    return {**NEZHA_METRICS, **(NEZHA_EDGE_METRICS if has_edge_latencies(directory) else {})}


def _nezha_frame(
    directory: Path,
    services: Sequence[str],
    metrics: dict[str, str],
    time_range: tuple[pd.Timestamp, pd.Timestamp],
) -> pd.DataFrame:
    """What the daemon reads from a ``pod_recording`` file source for ``time_range``, plus the
    longest count horizon before it as context, so the range's first steps have whole counts."""
    start, end = time_range
    return read_pod_recording(
        directory, services, metrics, start - MAX_COUNT_HORIZON, end, logs=False
    )


def _nezha_tensor(
    frame: pd.DataFrame,
    services: Sequence[str],
    metrics: dict[str, str],
    start: pd.Timestamp,
    horizon: pd.Timedelta,
) -> ServiceTensor:
    """``frame`` densified from ``start`` on, its earlier rows as context."""
    return densify(frame, services, list(metrics), NEZHA_VARIANT, horizon, scored_from=start)


def _nezha_logs(
    directory: Path, services: Sequence[str], time_range: tuple[pd.Timestamp, pd.Timestamp]
) -> pd.DataFrame:
    """The log events in ``time_range``: they show which service fell silent, never enter the
    tensors (Nezha keeps logs only around injections, so their mere presence would betray
    where the faults are)."""
    frame = read_pod_recording(directory, services, NEZHA_METRICS, *time_range, logs=True)
    return frame[frame[SEVERITY].notna()].reset_index(drop=True)


def evaluate_nezha_day(
    day: NezhaDay, label: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every detector on the day's training range, judge it on every fault.

    Returns the day's ``machines`` entry (detector -> record, and ``zscore_rca``) and its
    ``details`` (services, call graph, ranges, per-fault outcomes).
    """
    windows = fault_evaluation.fault_windows(day.faults)
    injections = [f.time for f in day.faults]
    outcomes: dict[str, list[fault_evaluation.FaultOutcome]] = {}
    detectors: dict[str, dict[str, Any]] = {}
    evidence_cache: dict[tuple[pd.Timestamp, pd.Timestamp], LogEvidence] = {}  # every detector
    for name in args.detector_list:
        started = time.perf_counter()
        try:
            detector = build_detector(name, args).fit(day.train, day.val)
            result = detector.score(day.scored)
            found = [
                fault_evaluation.judge(
                    result, w, day.call_graph, day.logs, NEZHA_ROLES, evidence_cache
                )
                for w in windows
            ]
        except Exception as exc:  # reported for this day and detector, the others still run
            detectors[name] = {ERROR: _error(exc)}
            print(f"[{label}] {name:<8} FAILED {detectors[name][ERROR]}", file=sys.stderr)
            continue
        outcomes[name] = found
        detectors[name] = _renamed(
            {
                **fault_evaluation.summarise(found),
                **fault_evaluation.alarm_counts(result, injections, day.training_range),
                "threshold": detector.threshold_,
                "seconds": time.perf_counter() - started,
                **training_info(detector),
            }
        )
        _progress(label, name, detectors[name])
    zscore = fault_evaluation.zscore_ranks(day.train, day.scored, windows, list(day.metrics))
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
    details = {
        "services": list(day.services),
        "metrics": list(day.metrics),
        "call_graph": [list(edge) for edge in day.call_graph],
        "training_range": list(day.training_range),
        "scored_range": list(day.scored_range),
        "train_steps": day.train.n_steps,
        "validation_steps": day.val.n_steps,
        "scored_steps": day.scored.n_steps,
        "faults": faults,
    }
    zscore_rca = _renamed(fault_evaluation.accuracy_at_k(zscore))
    return {**detectors, ZSCORE_RCA: zscore_rca}, details


def pooled(
    machines: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    detectors: Sequence[str],
) -> dict[str, Any]:
    """Every fault of every day judged together; alert counts and seconds summed.

    A day where a detector failed is left out of that detector's pool (``days``: days pooled).
    """
    result: dict[str, Any] = {}
    for name in [*detectors, ZSCORE_RCA]:
        days = [d for d in details if ERROR not in machines[d].get(name, {ERROR: ""})]
        faults = [f for d in days for f in details[d]["faults"]]
        if name == ZSCORE_RCA:
            ranks = [f[ZSCORE_RCA]["rank"] for f in faults]
            result[name] = {**_renamed(fault_evaluation.accuracy_at_k(ranks)), "days": len(days)}
            continue
        outcomes = [fault_evaluation.FaultOutcome(**f[name]) for f in faults]
        totals = {
            key: sum(machines[d][name][key] for d in days)
            for key in ("windows", "alerts", "quiet_windows", "false_alarms", "seconds")
        }
        result[name] = {
            **_renamed(fault_evaluation.summarise(outcomes)),
            **totals,
            "days": len(days),
        }
    return result


def fault_table(
    machines: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    detectors: Sequence[str],
) -> str:
    """One row per fault: per detector ``hit <delay>m #<rank>`` or ``miss #<rank>``."""
    names = [*detectors, ZSCORE_RCA]
    rows = [["day", "injected", "service", "kind", *names]]
    for label, day in details.items():
        for f in day["faults"]:
            cells = [_outcome_cell(f.get(name)) for name in detectors]
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


def _outcome_cell(outcome: dict[str, Any] | None) -> str:
    if outcome is None:
        return "failed"
    if outcome["detected"] is None:
        return "n/a"
    if outcome["detected"]:
        return f"hit {outcome['delay_minutes']:.1f}m {_rank(outcome)}"
    return f"miss {_rank(outcome)}"


def _rank(outcome: dict[str, Any]) -> str:
    return "#?" if outcome["rank"] is None else f"#{outcome['rank']}"


def _progress(label: str, name: str, record: dict[str, Any]) -> None:
    print(
        f"[{label}] {name:<8} detected {record['detected']}/{record['scorable']} "
        f"AC@1 {_cell(record['ac_at_1'])} false alarms {record['false_alarms']}  "
        f"{record['seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def run_nezha(args: argparse.Namespace) -> dict[str, Any]:
    """Every detector on every Nezha day; prints the per-fault, per-day and pooled tables."""
    machines: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    names = [*args.detector_list, ZSCORE_RCA]
    for label in args.machine_list:
        try:
            day = load_nezha_day(args.days_dir / label, args.window_size)
        except Exception as exc:  # e.g. too short to train on: reported, not dropped
            print(f"[{label}] failed to load: {_error(exc)}", file=sys.stderr)
            machines[label] = {n: {ERROR: _error(exc)} for n in names}
            continue
        machines[label], details[label] = evaluate_nezha_day(day, label, args)
    summary = machine_means(machines, args.detector_list, NEZHA_SUMMARY_METRICS)
    summary.update(machine_means(machines, [ZSCORE_RCA], NEZHA_SUMMARY_METRICS[1:]))
    overall = pooled(machines, details, args.detector_list)
    if details:
        print(fault_table(machines, details, args.detector_list))
        print()
    _print_tables(machines, summary, names, NEZHA_COLUMNS, "day")
    print()
    print("pooled over the faults of every day:")
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
        "summary": summary,
        "machines": machines,
        "pooled": overall,
        "details": details,
        "config": {
            "metrics": NEZHA_METRICS,
            "edge_metrics": NEZHA_EDGE_METRICS,
            "variant": NEZHA_VARIANT.label,
        },
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate, print the tables, write ``--out``; return the JSON payload."""
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    results = run_nezha(args) if args.nezha else run_smd(args)
    payload: dict[str, Any] = {
        **results,
        "errors": errors_of(results["machines"]),
        "config": {
            "dataset": args.dataset,
            "layout": args.layout,
            "root": str(args.root),
            "machines": args.machine_list,
            "summary_over": "days" if args.nezha else "machines",
            "detectors": args.detector_list,
            "implementations": {d: IMPLEMENTATIONS[d] for d in args.detector_list},
            "max_epochs": args.max_epochs,
            "window_size": args.window_size,
            "threshold_percentile": args.threshold_percentile,
            "validation_fraction": VALIDATION_FRACTION,
            "seed": args.seed,
            "torch_threads": args.torch_threads,
            **results["config"],
        },
        "code": code_version(REPO),
        "wall_seconds": time.perf_counter() - started,
    }
    print(f"wall time {payload['wall_seconds']:.1f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=json_default), "utf-8")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """0 when at least one machine (day) was evaluated by a detector, else 1."""
    payload = run(argv)
    evaluated = any(
        ERROR not in record for entry in payload["machines"].values() for record in entry.values()
    )
    return 0 if evaluated else 1


if __name__ == "__main__":
    sys.exit(main())
