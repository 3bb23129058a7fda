"""The inference summary JSON: the machine-readable result of one scoring run.

The schema is documented in ``docs/OUTPUTS.md``; bump ``SUMMARY_SCHEMA_VERSION`` on any change that
could break a consumer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.pipeline.periods import AnomalousPeriod

SUMMARY_SCHEMA_VERSION = 1


def build_summary(
    *,
    set_name: str,
    variant_label: str,
    model_version: str,
    result: ScoreResult,
    periods: list[AnomalousPeriod],
    incident_reports: Sequence[str] | None = None,
    edges: Sequence[tuple[str, str]] = (),
    edges_learned: bool = False,
) -> dict[str, Any]:
    """Everything an operator or a downstream tool needs from one run, as plain JSON types.

    ``incident_reports`` (one per period: the report's path relative to the summary) become each
    period's ``incident_report``. ``edges`` is the call graph the ranking used, ``edges_learned``
    whether it came from trace ids rather than the configuration: an operator checking why a
    service was "explained" needs to see the graph that explained it.
    """
    anomalous = result.is_anomalous
    period_dicts = [period.to_dict() for period in periods]
    if incident_reports is not None:
        if len(incident_reports) != len(periods):
            raise ValueError(
                f"{len(incident_reports)} incident reports for {len(periods)} anomalous periods"
            )
        for entry, report in zip(period_dicts, incident_reports, strict=True):
            entry["incident_report"] = report
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "set": set_name,
        "variant": variant_label,
        "model_version": model_version,
        "time_range": {"start": result.starts[0].isoformat(), "end": result.ends[-1].isoformat()},
        "threshold": result.threshold,
        "windows_scored": int(len(result.window_scores)),
        "anomalies": int(anomalous.sum()),
        "anomaly_rate": float(anomalous.mean()),
        "max_score": float(result.window_scores.max()),
        "service_scores": _per_service(result),
        "metric_scores": _per_metric(result),
        "anomalous_periods": period_dicts,
        "call_graph": {
            "source": ("trace ids" if edges_learned else "relationships") if edges else "none",
            "edges": [list(edge) for edge in edges],
        },
    }


def _per_service(result: ScoreResult) -> dict[str, dict[str, float]]:
    """Latest and maximum score per service over the run."""
    return {
        service: {
            "latest": float(result.service_scores[-1, index]),
            "max": float(result.service_scores[:, index].max()),
        }
        for index, service in enumerate(result.services)
    }


def _per_metric(result: ScoreResult) -> dict[str, dict[str, dict[str, float]]]:
    """Latest and maximum score per service and metric over the run."""
    latest, peak = result.metric_scores[-1], result.metric_scores.max(axis=0)
    return {
        service: {
            feature: {"latest": float(latest[s, f]), "max": float(peak[s, f])}
            for f, feature in enumerate(result.features)
        }
        for s, service in enumerate(result.services)
    }


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write atomically so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    tmp.replace(path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
