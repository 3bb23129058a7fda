"""Score one service set with its current model for one variant and write the outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ml_monitoring_service.config import ServiceSetConfig
from ml_monitoring_service.detectors.base import ScoreResult, WindowDetector
from ml_monitoring_service.errors import ModelMismatchError
from ml_monitoring_service.explain.call_graph import call_graph
from ml_monitoring_service.explain.narrative import Narrator
from ml_monitoring_service.outputs.incidents import write_incident_reports
from ml_monitoring_service.outputs.plots import plot_score_timeline, plot_service_graph
from ml_monitoring_service.outputs.summary import build_summary, write_summary
from ml_monitoring_service.pipeline.periods import AnomalousPeriod, anomalous_periods
from ml_monitoring_service.prepare.densify import densify
from ml_monitoring_service.prepare.variants import Variant

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceOutcome:
    """Scores, the summary written to disk, and where the files are.

    ``incident_reports`` are the Markdown incident reports, one per entry of ``periods``.
    """

    variant: Variant
    result: ScoreResult
    summary: dict[str, Any]
    files: tuple[Path, ...]
    periods: tuple[AnomalousPeriod, ...] = ()
    incident_reports: tuple[Path, ...] = ()


def output_paths(output_dir: Path, set_name: str, variant: Variant) -> dict[str, Path]:
    """The documented output file names for one set and variant."""
    base = output_dir / set_name
    return {
        "summary": base / f"inference_summary_{variant.name}.json",
        "graph": base / f"microservice_graph_with_results_{variant.name}.png",
        "timeline": base / f"score_timeline_{variant.name}.png",
        "incidents": base / "incidents",
    }


def score_variant(
    config: ServiceSetConfig,
    frame: pd.DataFrame,
    variant: Variant,
    detector: WindowDetector,
    model_version: str,
    output_dir: Path,
    narrator: Narrator | None = None,
) -> InferenceOutcome:
    """Densify ``frame`` like training did (with the model's count horizon), score it, and write
    summary JSON, PNGs and an incident report per anomalous period (with an LLM narrative when
    ``narrator`` is given). A set without ``relationships`` ranks, reports and draws the call
    graph learned from ``frame``'s trace ids."""
    if detector.count_horizon_ is None:
        raise ModelMismatchError(
            f"[{config.name}/{variant.label}] the model was not fitted on densified service data "
            "(it has no event-count horizon); retrain it for this service set"
        )
    tensor = densify(frame, config.services, list(config.metrics), variant, detector.count_horizon_)
    result = detector.score(tensor)
    edges = call_graph(config.edges, frame, config.services)
    if edges and not config.edges:
        logger.info(
            "[%s/%s] no relationships configured: %d call edges learned from trace ids",
            config.name,
            variant.label,
            len(edges),
        )
    periods = anomalous_periods(result, edges, frame, config.metric_roles)
    paths = output_paths(output_dir, config.name, variant)
    reports = write_incident_reports(
        periods,
        set_name=config.name,
        variant=variant,
        model_version=model_version,
        tensor=tensor,
        result=result,
        edges=edges,
        directory=paths["incidents"],
        narrator=narrator,
    )
    summary = build_summary(
        set_name=config.name,
        variant_label=variant.label,
        model_version=model_version,
        result=result,
        periods=periods,
        incident_reports=[str(r.relative_to(paths["summary"].parent)) for r in reports],
        edges=edges,
        edges_learned=not config.edges,
    )
    write_summary(summary, paths["summary"])
    title = f"{config.name} · {variant.label} · model {model_version}"
    plot_service_graph(result, edges, paths["graph"], title)
    plot_score_timeline(result, periods, paths["timeline"], title)
    logger.info(
        "[%s/%s] %d windows scored, %d anomalous (%.1f%%) in %d periods",
        config.name,
        variant.label,
        summary["windows_scored"],
        summary["anomalies"],
        100 * summary["anomaly_rate"],
        len(periods),
    )
    for period in periods:
        logger.warning(
            "[%s/%s] ANOMALY %s → %s peak %.3g (threshold %.3g): %s/%s",
            config.name,
            variant.label,
            period.start,
            period.end,
            period.peak_score,
            result.threshold,
            period.top_service,
            period.top_metric,
        )
    files = (paths["summary"], paths["graph"], paths["timeline"])
    return InferenceOutcome(variant, result, summary, files, tuple(periods), tuple(reports))
