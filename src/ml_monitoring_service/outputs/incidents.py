"""Incident reports: one Markdown + JSON file per anomalous period, saying what, where, since when.

The alert says *that* something is wrong; the report says what to look at. It is built in three
steps so log evidence and an LLM narrative can be added to the dict between them:
:func:`build_incident` (pure: numbers from the scores and the densified tensor),
:func:`render_markdown` and :func:`write_incident` (atomic files). :func:`write_incident_reports`
does all three, with the plots, for every period of a run and keeps the directory bounded.

Metric deviations are in the metric's own units (the densified tensor's values, not the scaled
ones the model sees): the baseline is the median of the run's steps before the period, the period
value is the period's step furthest from that median.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.outputs.incident_checks import suggested_checks
from ml_monitoring_service.outputs.incident_markdown import headline, render_markdown
from ml_monitoring_service.outputs.incident_plots import plot_incident
from ml_monitoring_service.pipeline.periods import AnomalousPeriod
from ml_monitoring_service.prepare.densify import ServiceTensor
from ml_monitoring_service.prepare.variants import Variant
from ml_monitoring_service.rootcause import Candidate

__all__ = [
    "INCIDENT_SCHEMA_VERSION",
    "KEEP_INCIDENTS",
    "build_incident",
    "incident_id",
    "prune_incidents",
    "render_markdown",
    "write_incident",
    "write_incident_reports",
]

INCIDENT_SCHEMA_VERSION = 1
METRICS_PER_CANDIDATE = 3  # metric deviations listed per candidate, highest score first
KEEP_INCIDENTS = 200  # reports kept per set directory (newest period starts); see prune_incidents
_ID_TIME = "%Y%m%dT%H%M%SZ"
_ID_PATTERN = re.compile(r"^(?P<id>.+-(?P<time>\d{8}T\d{6}Z))(?:-[a-z]+\.png|\.md|\.json)$")


def incident_id(set_name: str, variant: Variant, start: pd.Timestamp) -> str:
    """``<set>-<variant file name>-<period start as %Y%m%dT%H%M%SZ>``, e.g. ``demo-grid_30s-…``."""
    return f"{set_name}-{variant.name}-{start.tz_convert('UTC').strftime(_ID_TIME)}"


def build_incident(
    period: AnomalousPeriod,
    *,
    set_name: str,
    variant: Variant,
    model_version: str,
    tensor: ServiceTensor,
    result: ScoreResult,
    edges: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The incident dict (schema in ``docs/OUTPUTS.md``) of one period; writes nothing.

    ``tensor`` is the densified data ``result`` was scored on; ``logs`` is the period's log
    evidence (``LogEvidence.to_dict()``) when it was computed. ``narrative`` starts as ``None``.
    """
    ident = incident_id(set_name, variant, period.start)
    inside = _period_windows(result, period)
    totals = dict(zip(result.services, result.service_scores[inside].sum(axis=0), strict=True))
    candidates = [
        _candidate(rank, c, period, tensor, result, inside, edges, totals)
        for rank, c in enumerate(period.candidates, start=1)
    ]
    incident: dict[str, Any] = {
        "schema_version": INCIDENT_SCHEMA_VERSION,
        "id": ident,
        "set": set_name,
        "variant": variant.label,
        "model_version": model_version,
        "headline": "",
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "peak_time": period.peak_time.isoformat(),
        "peak_score": float(period.peak_score),
        "threshold": float(result.threshold),
        "windows": period.windows,
        "candidates": candidates,
        "logs": None if period.logs is None else period.logs.to_dict(),
        "plots": {kind: f"{ident}-{kind}.png" for kind in ("timeline", "metrics", "graph")},
        "suggested_checks": suggested_checks(candidates, edges),
        "narrative": None,
    }
    incident["headline"] = headline(incident)
    return incident


def _period_windows(result: ScoreResult, period: AnomalousPeriod) -> np.ndarray:
    """``[N]`` bool: the windows that make up ``period`` (its first start to its last end)."""
    return np.asarray((result.starts >= period.start) & (result.ends <= period.end))


def _candidate(
    rank: int,
    candidate: Candidate,
    period: AnomalousPeriod,
    tensor: ServiceTensor,
    result: ScoreResult,
    inside: np.ndarray,
    edges: Sequence[tuple[str, str]],
    totals: Mapping[str, float],
) -> dict[str, Any]:
    return {
        "rank": rank,
        "service": candidate.service,
        "metric": candidate.metric,
        "confidence": round(candidate.confidence, 4),
        "onset": None if candidate.onset is None else candidate.onset.isoformat(),
        "explained_by": candidate.explained_by,
        "evidence": candidate.evidence,
        "metric_deviations": metric_deviations(tensor, result, inside, period, candidate.service),
        "call_path": call_path(edges, candidate.service, totals),
    }


def metric_deviations(
    tensor: ServiceTensor,
    result: ScoreResult,
    inside: np.ndarray,
    period: AnomalousPeriod,
    service: str,
    limit: int = METRICS_PER_CANDIDATE,
) -> list[dict[str, Any]]:
    """``service``'s ``limit`` highest-scoring metrics in the period, with their real values.

    ``baseline_median`` is the median of the steps before the period (``None`` when the period
    starts with the data); ``period_value`` is the period step furthest from it (without a
    baseline: the period's median); ``direction`` is ``up``, ``down``, ``flat`` or ``None``.
    """
    s = result.services.index(service)
    peaks = result.metric_scores[inside, s, :].max(axis=0)  # [F]
    times = tensor.timestamps
    before = np.asarray(times < period.start)
    during = np.asarray((times >= period.start) & (times <= period.end))
    out = []
    for f in np.argsort(-peaks, kind="stable")[:limit]:
        feature = result.features[int(f)]
        column = tensor.values[:, tensor.services.index(service), tensor.features.index(feature)]
        base, value = _baseline_and_value(column[before], column[during])
        out.append(
            {
                "metric": feature,
                "score": float(peaks[f]),
                "baseline_median": base,
                "period_value": value,
                "direction": _direction(base, value),
            }
        )
    return out


def _baseline_and_value(
    baseline: np.ndarray, period: np.ndarray
) -> tuple[float | None, float | None]:
    """Median of the observed baseline steps and the period step furthest from it."""
    period = period[np.isfinite(period)]
    baseline = baseline[np.isfinite(baseline)]
    if not len(period):
        return (float(np.median(baseline)) if len(baseline) else None), None
    if not len(baseline):
        return None, float(np.median(period))
    median = float(np.median(baseline))
    return median, float(period[int(np.argmax(np.abs(period - median)))])


def _direction(base: float | None, value: float | None) -> str | None:
    if base is None or value is None:
        return None
    return "up" if value > base else "down" if value < base else "flat"


def call_path(
    edges: Sequence[tuple[str, str]], service: str, totals: Mapping[str, float]
) -> list[str]:
    """Shortest caller → callee path from an entry point (a service nobody calls) to ``service``.

    The shortest over all entry points wins; of equally short ones, the one whose services scored
    highest in the period (``totals``). In a cycle with no entry point any caller may start the
    path; a service nobody calls is a path of its own.
    """
    graph = nx.DiGraph(list(edges))
    if service not in graph:
        return [service]
    callers = nx.ancestors(graph, service)
    entries = [c for c in callers if graph.in_degree(c) == 0] or list(callers)
    paths = [p for entry in entries for p in nx.all_shortest_paths(graph, entry, service)]
    if not paths:
        return [service]
    return max(paths, key=lambda p: (-len(p), sum(totals.get(s, 0.0) for s in p), p))


def write_incident(incident: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``<id>.md`` and ``<id>.json`` into ``directory`` atomically; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / f"{incident['id']}.md"
    data = directory / f"{incident['id']}.json"
    _atomic_write(data, json.dumps(incident, indent=2) + "\n")
    _atomic_write(markdown, render_markdown(incident))
    return markdown, data


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_incident_reports(
    periods: Sequence[AnomalousPeriod],
    *,
    set_name: str,
    variant: Variant,
    model_version: str,
    tensor: ServiceTensor,
    result: ScoreResult,
    edges: Sequence[tuple[str, str]],
    directory: Path,
    keep: int = KEEP_INCIDENTS,
    narrator: Callable[[Mapping[str, Any]], dict[str, Any] | None] | None = None,
) -> list[Path]:
    """Build, plot and write a report per period; return the ``.md`` paths, in period order.

    A report whose JSON on disk is already identical (apart from its narrative) is not rewritten:
    the daemon rescores the same past every tick, and asking the LLM (``narrator``, optional)
    again for an unchanged incident would cost a request per period per tick. Afterwards the
    directory is pruned to ``keep`` reports.
    """
    written = []
    for period in periods:
        incident = build_incident(
            period,
            set_name=set_name,
            variant=variant,
            model_version=model_version,
            tensor=tensor,
            result=result,
            edges=edges,
        )
        if not _unchanged(incident, directory):
            if narrator is not None:
                incident["narrative"] = narrator(incident)
            plot_incident(incident, tensor, result, edges, directory)
            write_incident(incident, directory)
        written.append(directory / f"{incident['id']}.md")
    prune_incidents(directory, keep, protect={p.stem for p in written})
    return written


def _unchanged(incident: Mapping[str, Any], directory: Path) -> bool:
    """True when the report's files exist and its JSON equals ``incident`` (narrative aside)."""
    ident = incident["id"]
    names = [f"{ident}.json", f"{ident}.md", *incident["plots"].values()]
    if not all((directory / name).is_file() for name in names):
        return False
    try:
        stored = json.loads((directory / f"{ident}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    fresh = json.loads(json.dumps(incident))
    return bool({**stored, "narrative": None} == {**fresh, "narrative": None})


def prune_incidents(directory: Path, keep: int, protect: Collection[str] = ()) -> list[str]:
    """Delete every file of all but the ``keep`` reports with the newest period starts.

    Reports named in ``protect`` (ids) are never deleted, so the current run's links stay valid.
    Returns the deleted ids.
    """
    if not directory.is_dir():
        return []
    files: dict[str, list[Path]] = {}
    starts: dict[str, str] = {}
    for path in directory.iterdir():
        match = _ID_PATTERN.match(path.name)
        if match:
            files.setdefault(match["id"], []).append(path)
            starts[match["id"]] = match["time"]
    newest_first = sorted(files, key=lambda i: (starts[i], i), reverse=True)
    doomed = [i for i in newest_first[keep:] if i not in protect]
    for ident in doomed:
        for path in files[ident]:
            path.unlink(missing_ok=True)
    return doomed
