"""The three PNGs of an incident report: score timeline, top metrics, call graph.

Each is drawn from the incident dict (times, candidates, call paths, file names) plus the run's
scores and densified tensor, zoomed to the period with as much context on either side as the
period is long (at least one window), so the onset is visible against normal behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.dates import date2num

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.outputs.plots import call_graph_layout, save_figure
from ml_monitoring_service.prepare.densify import ServiceTensor

MAX_METRIC_PANELS = 4  # the top candidate's two best metrics, then one per further candidate


def plot_incident(
    incident: Mapping[str, Any],
    tensor: ServiceTensor,
    result: ScoreResult,
    edges: Sequence[tuple[str, str]],
    directory: Path,
) -> tuple[Path, Path, Path]:
    """Write the incident's timeline, metrics and graph PNGs (names from ``incident['plots']``)."""
    start, end = pd.Timestamp(incident["start"]), pd.Timestamp(incident["end"])
    margin = max(end - start, result.ends[0] - result.starts[0])
    zoom = (start - margin, end + margin)
    names = incident["plots"]
    paths = (
        directory / names["timeline"],
        directory / names["metrics"],
        directory / names["graph"],
    )
    _timeline(incident, result, zoom, paths[0])
    _metrics(incident, tensor, zoom, paths[1])
    _graph(incident, result, edges, paths[2])
    return paths[0], paths[1], paths[2]


def _shade(axes: plt.Axes, incident: Mapping[str, Any], onset: str | None) -> None:
    start, end = pd.Timestamp(incident["start"]), pd.Timestamp(incident["end"])
    axes.axvspan(date2num(start), date2num(end), color="red", alpha=0.12, label="period")
    if onset:
        axes.axvline(date2num(pd.Timestamp(onset)), color="black", linestyle=":", label="onset")


def _timeline(
    incident: Mapping[str, Any],
    result: ScoreResult,
    zoom: tuple[pd.Timestamp, pd.Timestamp],
    path: Path,
) -> None:
    """Window score (log scale) around the period, the threshold and the top candidate's onset."""
    keep = np.asarray((result.ends >= zoom[0]) & (result.ends <= zoom[1]))
    figure, axes = plt.subplots(figsize=(10, 3.5))
    axes.plot(result.ends[keep], result.window_scores[keep], linewidth=1.0, label="window score")
    axes.axhline(result.threshold, color="red", linestyle="--", label="threshold")
    top = incident["candidates"][0]["onset"] if incident["candidates"] else None
    _shade(axes, incident, top)
    axes.set_yscale("log")
    axes.set_ylabel("score (log)")
    axes.set_title(incident["headline"], fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    save_figure(figure, path)


def _panels(incident: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(candidate, metric deviation) pairs to draw, most important first."""
    panels = []
    for candidate in incident["candidates"]:
        per_candidate = 2 if candidate["rank"] == 1 else 1
        panels += [(candidate, d) for d in candidate["metric_deviations"][:per_candidate]]
    return panels[:MAX_METRIC_PANELS]


def _metrics(
    incident: Mapping[str, Any],
    tensor: ServiceTensor,
    zoom: tuple[pd.Timestamp, pd.Timestamp],
    path: Path,
) -> None:
    """Real values of the candidates' top metrics around the period, baseline median dashed."""
    panels = _panels(incident)
    keep = np.asarray((tensor.timestamps >= zoom[0]) & (tensor.timestamps <= zoom[1]))
    figure, axes_list = plt.subplots(
        max(len(panels), 1), 1, figsize=(10, 2.2 * max(len(panels), 1)), sharex=True, squeeze=False
    )
    for axes, (candidate, deviation) in zip(axes_list[:, 0], panels, strict=False):
        s = tensor.services.index(candidate["service"])
        f = tensor.features.index(deviation["metric"])
        axes.plot(tensor.timestamps[keep], tensor.values[keep, s, f], linewidth=1.0)
        if deviation["baseline_median"] is not None:
            axes.axhline(deviation["baseline_median"], color="grey", linestyle="--")
        _shade(axes, incident, candidate["onset"])
        axes.set_title(
            f"#{candidate['rank']} {candidate['service']} / {deviation['metric']} "
            f"(score {deviation['score']:.3g})",
            fontsize=9,
        )
    figure.autofmt_xdate()
    save_figure(figure, path)


def _graph(
    incident: Mapping[str, Any],
    result: ScoreResult,
    edges: Sequence[tuple[str, str]],
    path: Path,
) -> None:
    """Call graph: the suspected origin red, the rest of its call path orange, others grey."""
    graph = nx.DiGraph()
    graph.add_nodes_from(result.services)
    graph.add_edges_from(edges)
    route = incident["candidates"][0]["call_path"] if incident["candidates"] else []
    origin = route[-1] if route else None
    colours = [
        "tab:red" if n == origin else "tab:orange" if n in route else "lightgrey" for n in graph
    ]
    route_edges = set(zip(route, route[1:], strict=False))
    widths = [3.0 if e in route_edges else 1.0 for e in graph.edges]
    edge_colours = ["tab:red" if e in route_edges else "grey" for e in graph.edges]
    layout = call_graph_layout(graph)
    figure, axes = plt.subplots(figsize=(8, 6))
    nx.draw_networkx_edges(
        graph, layout, ax=axes, arrows=True, arrowsize=18, width=widths, edge_color=edge_colours
    )
    nx.draw_networkx_nodes(graph, layout, ax=axes, node_color=colours, node_size=2200)
    nx.draw_networkx_labels(graph, layout, ax=axes, font_size=8)
    axes.set_title(f"suspected origin: {origin or 'none'} · call path {' → '.join(route)}")
    axes.axis("off")
    save_figure(figure, path)
