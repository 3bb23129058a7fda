"""The call graph learned from trace ids, and the ranking that uses it when none is configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.pod_recordings import read_pod_recording
from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP, TRACE_ID
from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.explain.call_graph import call_graph, mine_call_graph
from ml_monitoring_service.outputs.summary import build_summary
from ml_monitoring_service.rootcause import rank_period

SERVICES = ("frontend", "checkout", "payment")
T0 = pd.Timestamp("2024-06-01T00:00:00Z")


def _lines(trace: str, start: float, calls: list[tuple[str, float, float]]) -> list[dict]:
    """Log lines of one trace: each (service, first, last) logs at its first and last second."""
    return [
        {
            TIMESTAMP: T0 + pd.Timedelta(seconds=start + offset),
            SERVICE: service,
            SEVERITY: 0.0,
            MESSAGE: f"{service} step",
            TRACE_ID: trace,
        }
        for service, first, last in calls
        for offset in (first, last)
    ]


def _traces(n: int, calls: list[tuple[str, float, float]], prefix: str = "t") -> pd.DataFrame:
    rows = [line for i in range(n) for line in _lines(f"{prefix}{i}", 10.0 * i, calls)]
    return pd.DataFrame(rows).sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)


# frontend wraps checkout, which wraps payment: frontend → checkout → payment.
CHAIN = [("frontend", 0.0, 0.9), ("checkout", 0.1, 0.8), ("payment", 0.2, 0.3)]


def test_a_service_logging_inside_another_ones_trace_span_is_its_callee() -> None:
    edges = mine_call_graph(_traces(6, CHAIN), SERVICES)
    # Transitive nesting (frontend around payment) is an edge too; the ranking follows edges
    # transitively, so it says nothing the direct ones do not.
    assert edges == (
        ("checkout", "payment"),
        ("frontend", "checkout"),
        ("frontend", "payment"),
    )


def test_too_few_traces_or_nesting_both_ways_give_no_edge() -> None:
    assert mine_call_graph(_traces(4, CHAIN), SERVICES) == ()
    reversed_chain = [("checkout", 0.0, 0.9), ("frontend", 0.1, 0.8)]
    both_ways = pd.concat([_traces(6, CHAIN[:2]), _traces(6, reversed_chain, prefix="r")])
    assert mine_call_graph(both_ways, SERVICES) == ()
    # one accidental reversal in six traces is tolerated (at most a fifth)
    one_reversal = pd.concat([_traces(6, CHAIN[:2]), _traces(1, reversed_chain, prefix="r")])
    assert mine_call_graph(one_reversal, SERVICES) == (("frontend", "checkout"),)


def test_no_trace_ids_no_graph() -> None:
    frame = _traces(6, CHAIN)
    assert mine_call_graph(frame.drop(columns=TRACE_ID), SERVICES) == ()
    assert mine_call_graph(frame.assign(**{TRACE_ID: np.nan}), SERVICES) == ()
    assert mine_call_graph(None, SERVICES) == ()
    # services outside the set are ignored; a service logging once per request encloses nothing
    assert mine_call_graph(frame, ("frontend", "payment")) == (("frontend", "payment"),)
    single = [("frontend", 0.5, 0.5), ("checkout", 0.1, 0.8)]
    assert mine_call_graph(_traces(6, single), SERVICES) == (("checkout", "frontend"),)


def test_configured_edges_win_over_learned_ones() -> None:
    frame = _traces(6, CHAIN)
    assert call_graph((("payment", "frontend"),), frame, SERVICES) == (("payment", "frontend"),)
    assert call_graph((), frame, SERVICES) == mine_call_graph(frame, SERVICES)


def _cascade() -> ScoreResult:
    """payment deviates first; checkout and frontend a window later with larger scores."""
    scores = np.array([[1, 1, 3], [6, 7, 3], [8, 9, 3], [8, 9, 3]], dtype=float)
    starts = pd.date_range(T0, periods=len(scores), freq="1min")
    return ScoreResult(
        window_scores=scores.max(axis=1),
        service_scores=scores,
        metric_scores=scores[:, :, None],
        starts=starts,
        ends=starts + pd.Timedelta("5min"),
        services=SERVICES,
        features=("latency",),
        threshold=2.0,
    )


def test_without_a_configured_graph_the_ranking_uses_the_learned_one() -> None:
    result = _cascade()
    period = np.ones(len(result.window_scores), dtype=bool)
    # Steady traffic from before the period: nobody is silent or complains, only traces differ.
    logs = _traces(60, CHAIN).assign(**{TIMESTAMP: lambda f: f[TIMESTAMP] - pd.Timedelta("2min")})
    learned = rank_period(result, period, (), logs)
    assert [c.service for c in learned] == ["payment", "checkout", "frontend"]
    assert learned[1].explained_by == "payment"
    plain = rank_period(result, period, (), logs.drop(columns=TRACE_ID))
    assert [c.service for c in plain] == ["checkout", "frontend", "payment"]
    # A configured graph wins over the logs: here one that explains nothing.
    declared = rank_period(result, period, (("payment", "frontend"),), logs)
    assert [c.service for c in declared] == ["checkout", "frontend", "payment"]


def test_the_summary_names_the_graph_and_where_it_came_from() -> None:
    def summary_graph(edges: tuple[tuple[str, str], ...], learned: bool) -> Any:
        summary = build_summary(
            set_name="s",
            variant_label="event",
            model_version="v",
            result=_cascade(),
            periods=[],
            edges=edges,
            edges_learned=learned,
        )
        return summary["call_graph"]

    edge = (("checkout", "payment"),)
    assert summary_graph((), learned=True) == {"source": "none", "edges": []}
    assert summary_graph(edge, learned=True) == {
        "source": "trace ids",
        "edges": [["checkout", "payment"]],
    }
    assert summary_graph(edge, learned=False)["source"] == "relationships"


TRAIN_TICKET = Path(__file__).resolve().parents[2] / "shared/data/nezha/rca_data/2023-01-29"


@pytest.mark.skipif(not TRAIN_TICKET.is_dir(), reason="../shared Nezha data not present")
def test_train_ticket_logs_give_its_documented_call_chain() -> None:
    services = ("ts-travel-service", "ts-basic-service", "ts-route-service", "ts-price-service")
    frame = read_pod_recording(
        TRAIN_TICKET,
        services,
        {},
        pd.Timestamp("2023-01-29T08:40Z"),
        pd.Timestamp("2023-01-29T09:00Z"),
    )
    edges = set(mine_call_graph(frame, services))
    # travel asks basic for a trip's basics, and basic asks route and price.
    assert {
        ("ts-travel-service", "ts-basic-service"),
        ("ts-basic-service", "ts-route-service"),
        ("ts-basic-service", "ts-price-service"),
    } <= edges
    assert not {(callee, caller) for caller, callee in edges} & edges
