"""PNG views of an inference run: the call graph coloured by score, and the score timeline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the daemon never has a display

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
from matplotlib.dates import date2num

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.pipeline.periods import AnomalousPeriod


def plot_service_graph(
    result: ScoreResult, edges: Sequence[tuple[str, str]], path: Path, title: str
) -> None:
    """Call graph with each service coloured by its peak score relative to the threshold.

    Green is below half the threshold, red is at or above it; the label shows peak/threshold.
    """
    graph = nx.DiGraph()
    graph.add_nodes_from(result.services)
    graph.add_edges_from(edges)
    ratio = result.service_scores.max(axis=0) / max(result.threshold, 1e-12)
    colours = plt.get_cmap("RdYlGn_r")(np.clip(ratio, 0.0, 1.0))
    layout = call_graph_layout(graph)
    figure, axes = plt.subplots(figsize=(8, 6))
    nx.draw_networkx_edges(graph, layout, ax=axes, arrows=True, arrowsize=18, edge_color="grey")
    nx.draw_networkx_nodes(graph, layout, ax=axes, node_color=colours, node_size=2200)
    labels = {s: f"{s}\n{r:.2f}×" for s, r in zip(result.services, ratio, strict=True)}
    nx.draw_networkx_labels(graph, layout, labels=labels, ax=axes, font_size=8)
    axes.set_title(f"{title}\npeak service score / threshold")
    axes.axis("off")
    save_figure(figure, path)


def call_graph_layout(graph: nx.DiGraph) -> dict[str, np.ndarray]:
    """Callers above callees when the graph is a DAG; a seeded spring layout otherwise."""
    if graph.number_of_edges() and nx.is_directed_acyclic_graph(graph):
        for layer, nodes in enumerate(nx.topological_generations(graph)):
            for node in nodes:
                graph.nodes[node]["layer"] = layer
        return nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=-1)
    return nx.spring_layout(graph, seed=0)


def plot_score_timeline(
    result: ScoreResult, periods: Sequence[AnomalousPeriod], path: Path, title: str
) -> None:
    """Window score over time with the threshold and shaded anomalous periods."""
    figure, axes = plt.subplots(figsize=(12, 4))
    axes.plot(result.ends, result.window_scores, linewidth=0.8, label="window score")
    axes.axhline(result.threshold, color="red", linestyle="--", label="threshold")
    for period in periods:
        axes.axvspan(date2num(period.start), date2num(period.end), color="red", alpha=0.15)
    axes.set_yscale("log")
    axes.set_title(title)
    axes.set_ylabel("score (log)")
    axes.legend(loc="upper left")
    figure.autofmt_xdate()
    save_figure(figure, path)


def save_figure(figure: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
