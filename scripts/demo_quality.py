"""Detection and root-cause quality on the demo's labelled incidents: the README's demo table.

    python scripts/demo_quality.py [--variants grid:30s,event] [--ends 2024-06-05T18:00Z,...]
        [--hours 8] [--detectors transformer,robust_zscore,pca] [--out demo_quality.json]

For each variant and each scored period (``--hours`` ending at each of ``--ends``), every detector
is trained the way the daemon trains the shipped ``demo`` set (its training lookback ending where
the period starts, the configured validation split) and judged with ``evaluation.detection_quality``
against the demo's incidents: ROC/PR AUC, precision/recall/F1 at the persisted threshold,
incidents detected, and the share of incidents whose root service the shipped root-cause ranking
puts first, once with the scored data's log events (silence, log complaints: what the incident
reports use) and once from the scores and the call graph alone; then, as an operator sees it, the
number of incident reports (anomalous periods), of those overlapping no incident, and of incidents
with an overlapping report whose first candidate is the incident's root.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from ml_monitoring_service.config import ServiceSetConfig, load_config  # noqa: E402
from ml_monitoring_service.data.sources import inference_data, training_data  # noqa: E402
from ml_monitoring_service.detectors.base import WindowDetector  # noqa: E402
from ml_monitoring_service.detectors.baselines import (  # noqa: E402
    PCADetector,
    RobustZScoreDetector,
)
from ml_monitoring_service.evaluation import LabelledSpan, detection_quality  # noqa: E402
from ml_monitoring_service.pipeline.periods import anomalous_periods  # noqa: E402
from ml_monitoring_service.pipeline.training import (  # noqa: E402
    build_detector,
    chronological_split,
    count_horizon,
)
from ml_monitoring_service.prepare.densify import densify  # noqa: E402
from ml_monitoring_service.prepare.variants import Variant  # noqa: E402

DETECTORS = ("transformer", "robust_zscore", "pca")
DEFAULT_ENDS = "2024-06-05T18:00:00Z,2024-06-09T06:00:00Z"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="grid:30s,event")
    parser.add_argument("--ends", default=DEFAULT_ENDS, help="UTC end of each scored period")
    parser.add_argument("--hours", type=float, default=8.0, help="length of each scored period")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.detector_list = [d for d in args.detectors.split(",") if d]
    unknown = sorted(set(args.detector_list) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; known: {list(DETECTORS)}")
    return args


def detector(name: str, config: ServiceSetConfig) -> WindowDetector:
    """The shipped transformer, or a baseline with the set's window and strides."""
    if name == "transformer":
        return build_detector(config, show_progress=False)
    window = {
        "window_size": config.preprocessing.window_size,
        "train_stride": config.preprocessing.train_stride,
    }
    return RobustZScoreDetector(**window) if name == "robust_zscore" else PCADetector(**window)


def judge_period(
    config: ServiceSetConfig, variant: Variant, end: pd.Timestamp, names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Every detector's quality on the period ending at ``end``."""
    metrics = list(config.metrics)
    training = training_data(config, end).frame
    horizon = count_horizon(config, training)
    history = densify(training, config.services, metrics, variant, horizon)
    train, val = chronological_split(
        history, config.model.validation_fraction, config.preprocessing.window_size
    )
    scored = inference_data(config, end)
    tensor = densify(scored.frame, config.services, metrics, variant, horizon)
    spans = [LabelledSpan(i.service, i.start, i.end) for i in scored.incidents]
    found = {}
    for name in names:
        result = detector(name, config).fit(train, val).score(tensor)
        quality = detection_quality(
            result, spans, config.edges, scored.frame, config.metric_roles
        ).as_dict()
        metrics_only = detection_quality(
            result, spans, config.edges, roles=config.metric_roles
        ).root_cause_top1
        periods = anomalous_periods(result, config.edges, scored.frame, config.metric_roles)
        found[name] = {
            **quality,
            "root_cause_top1_without_logs": metrics_only,
            "incident_reports": len(periods),
            "incident_reports_without_an_incident": sum(
                not any(p.start <= s.end and p.end >= s.start for s in spans) for p in periods
            ),
            "incidents_with_a_report_naming_the_root": sum(
                any(
                    p.start <= s.end and p.end >= s.start and p.top_service == s.service
                    for p in periods
                )
                for s in spans
            ),
        }
        print(f"[{variant.label} {end}] {name}: {_line(found[name])}", flush=True)
    return found


def _line(record: dict[str, Any]) -> str:
    without_logs = record["root_cause_top1_without_logs"]
    idle = record["incident_reports_without_an_incident"]
    named = record["incidents_with_a_report_naming_the_root"]
    return (
        f"ROC AUC {record['roc_auc']:.3f} PR AUC {record['pr_auc']:.3f} F1 {record['f1']:.3f} "
        f"detected {record['events_detected']}/{record['events']} root first "
        f"{record['root_cause_top1']:.2f} (without logs {without_logs:.2f}); reports "
        f"{record['incident_reports']} ({idle} without an incident), naming the root of "
        f"{named} incidents"
    )


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)  # two threads on two shared cores were slower, not faster
    base = load_config().service_set("demo")
    lookback = pd.Timedelta(hours=args.hours)
    schedule = base.schedule.model_copy(update={"inference_lookback": lookback})
    config = base.model_copy(update={"schedule": schedule})
    results: dict[str, Any] = {}
    for label in args.variants.split(","):
        variant = Variant.parse(label)
        for end in args.ends.split(","):
            stamp = pd.Timestamp(end)
            key = f"{variant.label}@{stamp.isoformat()}"
            results[key] = judge_period(config, variant, stamp, args.detector_list)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return results


if __name__ == "__main__":
    run()
