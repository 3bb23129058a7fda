"""Benchmark every detector on the same data with injected, labelled anomalies.

Training data is clean; a held-aside stretch after it gets spikes, dropouts, level shifts and noise
(``ml_monitoring_service.injection``) on known services, metrics and time ranges, and on the demo
also drifts and cascades along its call graph (``--kinds`` picks; a cascade on a recording follows
the call graph its trace ids give, ``explain.call_graph.mine_call_graph``). Each
preprocessing variant is densified, every detector is fitted on the same chronological
train/validation split and scores the injected stretch, and the scores are judged against the
injections: a window is anomalous when it overlaps one.

    PYTHONPATH=src .venv/bin/python scripts/synthetic_benchmark.py \\
        --variants event,grid:30s --seeds 1,2 --max-epochs 10 --out results.json

Without ``--dataset`` the data is the embedded demo (clean: ``incident_every=None``), generated per
seed: a training day and a scored stretch right after it. With ``--dataset PATH`` (any file the file
source reads) the first 60 % of the recording's time trains (its last 20 % validates) and the rest
is the scored stretch; metrics are the numeric columns other than ``severity_level``. The last
count horizon of the training data is densified with the scored stretch as context, so its first
windows have whole ``event_count`` values (the stretch is only minutes long on small recordings).

Reported per variant and detector, mean ± standard deviation over seeds: ROC AUC and PR AUC;
precision, recall and F1 at the operational threshold (the validation percentile each detector
persists); the best F1 over all thresholds (an *upper bound*: it picks the threshold with the
labels); event recall (injections with at least one alerting window); the rank of the injected
service in the shipped root-cause ranking of the windows it touches (with the call graph the
injections followed: the demo's, or on a recording the one mined for a cascade), and of the injected
(service, metric) channel among all channels, by peak score inside the injection; in the JSON
also, per injection kind, event recall and the ROC AUC of that kind's windows against the windows
no injection touches. A variant that yields too few windows is reported as such.
"""

from __future__ import annotations

import argparse
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
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ml_monitoring_service.benchmarking import (
    BENCHMARK_DETECTORS,
    build_benchmark_detector,
    code_version,
    json_default,
)
from ml_monitoring_service.config import ModelConfig
from ml_monitoring_service.data.demo import DEMO_EDGES, DEMO_METRICS, DEMO_SERVICES, generate_demo
from ml_monitoring_service.data.readers import numeric_columns, read_combined
from ml_monitoring_service.data.schema import SERVICE, TIMESTAMP
from ml_monitoring_service.detectors import ScoreResult
from ml_monitoring_service.errors import ConfigError, InsufficientDataError
from ml_monitoring_service.evaluation import (
    LabelledSpan,
    detection_quality,
    root_cause_ranks,
    window_labels,
)
from ml_monitoring_service.explain.call_graph import mine_call_graph
from ml_monitoring_service.injection import BASIC_KINDS, INJECTION_KINDS, Injection, inject
from ml_monitoring_service.pipeline.training import chronological_split
from ml_monitoring_service.prepare.densify import (
    SILENCE_FEATURES,
    ServiceTensor,
    densify,
    fit_count_horizon,
)
from ml_monitoring_service.prepare.variants import Variant

DEMO_TRAIN_START = pd.Timestamp("2024-06-04T10:00:00Z")
TRAIN_SHARE = 0.6  # --dataset: share of the recording's time used for training
VALIDATION_FRACTION = 0.2
MIN_CLASS_WINDOWS = 2  # fewer normal or anomalous windows than this is "too few windows"
# Columns in the table: (JSON key, header).
TABLE_COLUMNS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("precision", "P@thr"),
    ("recall", "R@thr"),
    ("f1", "F1@thr"),
    ("best_f1", "bestF1(UB)"),
    ("event_recall", "event rec"),
    ("service_rank", "svc rank"),
    ("metric_rank", "metric rank"),
    ("seconds", "fit+score s"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="event,grid:30s", help="comma-separated variants")
    parser.add_argument("--dataset", type=Path, default=None, help="combined dataset file")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--out", type=Path, default=Path("results.json"))
    parser.add_argument(
        "--detectors", default=",".join(BENCHMARK_DETECTORS), help=f"from {BENCHMARK_DETECTORS}"
    )
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=ModelConfig().max_epochs,
        help="transformer epoch cap (default: the shipped model's, %(default)s)",
    )
    parser.add_argument("--window-size", type=int, default=None, help="default 32 demo, 16 file")
    parser.add_argument("--threshold-percentile", type=float, default=99.5)
    parser.add_argument(
        "--injections", type=int, default=None, help="per scored stretch (default: 2 per kind)"
    )
    parser.add_argument(
        "--kinds",
        default=None,
        help=f"from {INJECTION_KINDS} (default: all on the demo, {BASIC_KINDS} on a --dataset)",
    )
    parser.add_argument("--train-hours", type=float, default=24.0, help="demo only")
    parser.add_argument("--score-hours", type=float, default=8.0, help="demo only")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch CPU threads (1: on a shared 2-core machine more threads ran ~9x slower)",
    )
    args = parser.parse_args(argv)
    args.variant_list = [Variant.parse(v) for v in args.variants.split(",") if v.strip()]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.detector_list = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = sorted(set(args.detector_list) - set(BENCHMARK_DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; choose from {list(BENCHMARK_DETECTORS)}")
    if args.kinds is None:
        args.kind_list = INJECTION_KINDS if args.dataset is None else BASIC_KINDS
    else:
        args.kind_list = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if args.injections is None:
        args.injections = 2 * len(args.kind_list)
    if args.window_size is None:
        args.window_size = 16 if args.dataset is not None else 32
    return args


# -------------------------------------------------------------------------------------- data


def load_recording(path: Path) -> tuple[pd.DataFrame, tuple[str, ...], tuple[str, ...]]:
    """A combined dataset file, its metrics (numeric columns but severity) and its services."""
    metrics = numeric_columns(path)
    frame = read_combined(path, metrics)
    services = tuple(sorted(frame[SERVICE].astype(str).unique()))
    return frame, services, metrics


def split_recording(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First ``TRAIN_SHARE`` of the time range trains, the rest is the scored stretch."""
    first, last = frame[TIMESTAMP].iloc[0], frame[TIMESTAMP].iloc[-1]
    cut = first + (last - first) * TRAIN_SHARE
    before = frame[TIMESTAMP] < cut
    return frame.loc[before].reset_index(drop=True), frame.loc[~before].reset_index(drop=True)


def demo_data(
    seed: int, train_hours: float, score_hours: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean demo training data and the clean stretch right after it (to be injected)."""
    train_end = DEMO_TRAIN_START + pd.Timedelta(hours=train_hours)
    score_end = train_end + pd.Timedelta(hours=score_hours)
    train = generate_demo(DEMO_TRAIN_START, train_end, seed=seed, incident_every=None).frame
    scored = generate_demo(train_end, score_end, seed=seed, incident_every=None).frame
    return train, scored


# ---------------------------------------------------------------------------------- metrics


def channel_rank(result: ScoreResult, injection: Injection, inside: np.ndarray) -> float | None:
    """1-based rank of the injected (service, metric) channel by peak score inside the span.

    A silence feature stands for both (``SILENCE_FEATURES``: a dropout shows in the count and in
    the gap since the last event alike), so the better ranked of them counts. Ties count half
    (the expected rank under random tie-breaking); ``None`` if no window overlaps the span or the
    metric is not a feature.
    """
    names = SILENCE_FEATURES if injection.metric in SILENCE_FEATURES else (injection.metric,)
    columns = [result.features.index(name) for name in names if name in result.features]
    if not inside.any() or not columns:
        return None
    peaks = result.metric_scores[inside].max(axis=0)
    value = peaks[result.services.index(injection.service), columns].max()
    return 1.0 + float(np.sum(peaks > value)) + 0.5 * float(np.sum(peaks == value) - 1)


def evaluate(
    result: ScoreResult,
    injections: Sequence[Injection],
    edges: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Every reported number for one (variant, detector, seed); ``edges`` is the call graph the
    injections followed, which the service ranking uses as the daemon's would."""
    spans = [LabelledSpan(i.service, i.start, i.end) for i in injections]
    labels = window_labels(result, spans)
    quality = detection_quality(result, spans)
    precision, recall, _ = precision_recall_curve(labels, result.window_scores)
    f1s = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0
    )
    best = int(np.argmax(f1s))
    insides = [np.asarray((result.starts <= s.end) & (result.ends >= s.start)) for s in spans]
    detected = [bool(result.is_anomalous[m].any()) for m in insides]
    service_ranks = root_cause_ranks(result, spans, edges)
    metric_ranks = [channel_rank(result, i, m) for i, m in zip(injections, insides, strict=True)]
    by_kind: dict[str, list[bool]] = {}
    kind_windows: dict[str, np.ndarray] = {}
    for injection, hit, inside in zip(injections, detected, insides, strict=True):
        by_kind.setdefault(injection.kind, []).append(hit)
        kind_windows[injection.kind] = kind_windows.get(injection.kind, inside) | inside
    return {
        "roc_auc": quality.roc_auc,
        "pr_auc": quality.pr_auc,
        "precision": quality.precision,
        "recall": quality.recall,
        "f1": quality.f1,
        "best_f1": float(f1s[best]),
        "best_f1_precision": float(precision[best]),
        "best_f1_recall": float(recall[best]),
        "event_recall": float(np.mean(detected)),
        "events_detected": int(sum(detected)),
        "events": len(injections),
        "event_recall_by_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
        "roc_auc_by_kind": _roc_auc_by_kind(result.window_scores, labels, kind_windows),
        "service_rank": _mean([r for r in service_ranks if r is not None]),
        "service_top1": _mean([float(r == 1) for r in service_ranks if r is not None]),
        "metric_rank": _mean([r for r in metric_ranks if r is not None]),
        "metric_top1": _mean([float(r == 1) for r in metric_ranks if r is not None]),
        "service_ranks": service_ranks,
        "metric_ranks": metric_ranks,
        "threshold": result.threshold,
    }


def _roc_auc_by_kind(
    scores: np.ndarray, labels: np.ndarray, kind_windows: dict[str, np.ndarray]
) -> dict[str, float]:
    """Per injection kind, ROC AUC of its windows against the windows no injection touches: the
    pooled AUC hides which kind a detector cannot see (dropouts, before ``seconds_since_event``)."""
    clean = ~labels
    out: dict[str, float] = {}
    for kind, inside in sorted(kind_windows.items()):
        chosen = inside | clean
        if inside.any() and clean.any():
            out[kind] = float(roc_auc_score(inside[chosen], scores[chosen]))
    return out


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


# ------------------------------------------------------------------------------------ runs


def run_variant(
    variant: Variant,
    train_frame: pd.DataFrame,
    scored_frame: pd.DataFrame,
    injections: Sequence[Injection],
    services: Sequence[str],
    metrics: Sequence[str],
    args: argparse.Namespace,
    seed: int,
    edges: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Fit and score every detector on one variant; ``status`` says whether it was scorable."""
    record: dict[str, Any] = {"variant": variant.label, "seed": seed, "detectors": {}}
    try:
        horizon = fit_count_horizon(train_frame, services)
        history = densify(train_frame, services, metrics, variant, horizon)
        train, val = chronological_split(history, VALIDATION_FRACTION, args.window_size)
        scored_from = scored_frame[TIMESTAMP].iloc[0]
        context = train_frame[train_frame[TIMESTAMP] >= scored_from - horizon]
        scored = densify(
            pd.concat([context, scored_frame], ignore_index=True),
            services,
            metrics,
            variant,
            horizon,
            scored_from=scored_from,
        )
        if scored.n_steps < args.window_size:
            raise InsufficientDataError(
                f"scored stretch has {scored.n_steps} steps, fewer than one window "
                f"({args.window_size})"
            )
        labels = _labels_for(scored, injections, args.window_size)
    except InsufficientDataError as exc:
        record.update(status="too few windows", reason=str(exc))
        return record
    record.update(
        count_horizon_seconds=horizon.total_seconds(),
        train_steps=train.n_steps,
        validation_steps=val.n_steps,
        scored_steps=scored.n_steps,
        scored_windows=int(labels.size),
        anomalous_windows=int(labels.sum()),
    )
    if min(int(labels.sum()), int((~labels).sum())) < MIN_CLASS_WINDOWS:
        record.update(
            status="too few windows",
            reason=f"{int(labels.sum())} of {labels.size} scored windows overlap an injection",
        )
        return record
    record["status"] = "ok"
    for name in args.detector_list:
        started = time.perf_counter()
        try:
            detector = build_benchmark_detector(
                name,
                window_size=args.window_size,
                threshold_percentile=args.threshold_percentile,
                max_epochs=args.max_epochs,
                seed=seed,
            ).fit(train, val)
            result = detector.score(scored)
        except InsufficientDataError as exc:
            record["detectors"][name] = {"status": "too few windows", "reason": str(exc)}
            continue
        seconds = time.perf_counter() - started
        metrics_out = evaluate(result, injections, edges)
        metrics_out["seconds"] = seconds
        if name == "transformer":
            metrics_out["epochs"] = len(detector.epoch_losses_)  # type: ignore[attr-defined]
            metrics_out["best_epoch"] = detector.best_epoch_  # type: ignore[attr-defined]
        record["detectors"][name] = {"status": "ok", **metrics_out}
        print(
            f"[{variant.label}] {name:<16} seed {seed}: ROC AUC {metrics_out['roc_auc']:.3f} "
            f"F1 {metrics_out['f1']:.3f}  {seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return record


def _labels_for(scored: ServiceTensor, injections: Sequence[Injection], window: int) -> np.ndarray:
    """Window labels for the scored stretch (stride 1), without fitting anything."""
    starts = scored.timestamps[: scored.n_steps - window + 1]
    ends = scored.timestamps[window - 1 :]
    labels = np.zeros(len(starts), dtype=bool)
    for i in injections:
        labels |= np.asarray((starts <= i.end) & (ends >= i.start))
    return labels


def summarise(runs: Sequence[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Mean and standard deviation over seeds, per variant and detector."""
    summary: dict[str, Any] = {}
    for variant in args.variant_list:
        records = [r for r in runs if r["variant"] == variant.label]
        scorable = [r for r in records if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "status": "ok" if scorable else "too few windows",
            "seeds_scored": [r["seed"] for r in scorable],
            "seeds_too_few_windows": [r["seed"] for r in records if r["status"] != "ok"],
            "detectors": {},
        }
        if not scorable:
            entry["reason"] = records[0].get("reason") if records else "not run"
        for name in args.detector_list:
            done = [
                r["detectors"][name]
                for r in scorable
                if r["detectors"].get(name, {}).get("status") == "ok"
            ]
            if not done:
                entry["detectors"][name] = {"status": "too few windows"}
                continue
            stats: dict[str, Any] = {"status": "ok", "seeds": len(done)}
            for key, _ in TABLE_COLUMNS:
                values = [d[key] for d in done if d.get(key) is not None]
                stats[key] = _mean_std(values)
            for key in ("event_recall_by_kind", "roc_auc_by_kind"):
                kinds = sorted({k for d in done for k in d[key]})
                stats[key] = {k: _mean_std([d[key][k] for d in done if k in d[key]]) for k in kinds}
            for key in ("service_top1", "metric_top1"):
                stats[key] = _mean_std([d[key] for d in done if d.get(key) is not None])
            entry["detectors"][name] = stats
        summary[variant.label] = entry
    return summary


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std}


def format_table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    """Plain-text table, one row per variant and detector: mean ± std over seeds."""
    headers = ["variant", "detector", *[h for _, h in TABLE_COLUMNS]]
    rows: list[list[str]] = []
    for variant, entry in summary.items():
        if entry["status"] != "ok":
            rows.append([variant, "(all)", f"too few windows: {entry.get('reason', '')}"])
            continue
        for name, stats in entry["detectors"].items():
            if stats["status"] != "ok":
                rows.append([variant, name, "too few windows"])
                continue
            rows.append([variant, name, *[_cell(stats[key]) for key, _ in TABLE_COLUMNS]])
    widths = [
        max(len(r[i]) for r in [headers, *rows] if i < len(r) and len(r) > 3)
        for i in range(len(headers))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in rows:
        if len(row) == 3:
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    seeds = ",".join(str(s) for s in args.seed_list)
    lines.append(
        f"mean ± std over seeds {seeds}; @thr = at the persisted {args.threshold_percentile} "
        "validation percentile; bestF1(UB) = best F1 over all thresholds (upper bound); ranks are "
        "1-based (services, then service×metric channels)"
    )
    return "\n".join(lines)


def _cell(stat: dict[str, float | None]) -> str:
    if stat["mean"] is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
        return "n/a"
    return f"{stat['mean']:.3f}±{stat['std']:.3f}"


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, write ``--out``; return the JSON payload."""
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    started = time.perf_counter()
    recording = load_recording(args.dataset) if args.dataset is not None else None
    runs: list[dict[str, Any]] = []
    for seed in args.seed_list:
        if recording is None:
            services, metrics, edges = DEMO_SERVICES, DEMO_METRICS, DEMO_EDGES
            train_frame, clean_scored = demo_data(seed, args.train_hours, args.score_hours)
        else:
            frame, services, metrics = recording
            edges = mine_call_graph(frame, services) if "cascade" in args.kind_list else ()
            if "cascade" in args.kind_list and not edges:
                raise ConfigError(
                    f"cascade injections need a call graph; none can be mined from the trace "
                    f"ids of {args.dataset} (drop cascade from --kinds)"
                )
            train_frame, clean_scored = split_recording(frame)
        scored_frame, injections = inject(
            clean_scored,
            services,
            metrics,
            kinds=args.kind_list,
            count=args.injections,
            seed=seed,
            reference=train_frame,
            edges=edges,
        )
        for variant in args.variant_list:
            record = run_variant(
                variant, train_frame, scored_frame, injections, services, metrics, args, seed, edges
            )
            record["injections"] = [i.as_dict() for i in injections]
            if record["status"] != "ok":
                print(f"[{variant.label}] seed {seed}: too few windows", file=sys.stderr)
            runs.append(record)
    summary = summarise(runs, args)
    payload = {
        "config": {
            "dataset": str(args.dataset) if args.dataset is not None else "demo",
            "variants": [v.label for v in args.variant_list],
            "seeds": args.seed_list,
            "detectors": args.detector_list,
            "max_epochs": args.max_epochs,
            "window_size": args.window_size,
            "threshold_percentile": args.threshold_percentile,
            "injections": args.injections,
            "kinds": list(args.kind_list),
            **(
                {"train_hours": args.train_hours, "score_hours": args.score_hours}
                if args.dataset is None
                else {"train_share": TRAIN_SHARE}
            ),
            "validation_fraction": VALIDATION_FRACTION,
            "torch_threads": args.torch_threads,
        },
        "code": code_version(Path(__file__).resolve().parents[1]),
        "summary": summary,
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }
    print(format_table(summary, args))
    print(f"wall time {payload['wall_seconds']:.1f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=json_default), encoding="utf-8")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(argv)
    except ConfigError as exc:  # bad options or data: one line, no traceback
        print(f"synthetic_benchmark: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
