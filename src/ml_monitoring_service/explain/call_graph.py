"""Learn who calls whom from the trace ids on log events, for service sets without a call graph.

The root-cause ranking needs the call graph to tell a cause from its echo (a slow callee makes its
callers slow), but few teams keep one in their configuration, and it goes stale as services
change. Their logs already hold it: a request that crosses services logs under one trace id, and a
caller is busy for the whole time its callee works on the request, so within one trace the
caller's log lines come before *and* after the callee's. A service whose lines in a trace lie
strictly inside another service's lines is taken to be called by it, directly or through others
(the ranking follows the graph transitively, so an indirect edge says nothing wrong).

One trace can nest by accident (two parallel calls of one caller, clocks a millisecond apart), so
an edge needs ``min_traces`` traces that nest that way and at most ``max_reversed`` as many that
nest the other way round. A service that logs once per request can never enclose another one, and
clock skew between hosts shifts a callee's lines out of its caller's span (a shift cannot make the
shorter span enclose the longer one): such sets get fewer edges rather than reversed ones. The
banking recording in ``../shared/data/reference-recording`` has a trace id on every line, but its
callee often logs before its caller; it gives no edge at all. On Nezha's Train Ticket day (46
services, no call graph in the recording) an hour of logs gives ``ts-travel-service →
ts-basic-service → ts-route-service`` and the like, the application's documented architecture
(docs/BENCHMARKS.md §4 measures what the ranking gains).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import pandas as pd

from ml_monitoring_service.data.schema import SERVICE, TIMESTAMP, TRACE_ID

MIN_TRACES = 5
MAX_REVERSED = 0.2

Node = TypeVar("Node", bound=Hashable)


def adjacency(edges: Sequence[tuple[str, str]], upstream: bool = False) -> dict[str, list[str]]:
    """Per service, its callees (or its callers, ``upstream``) in edge order; self-calls are left
    out, and a service with none has no entry."""
    neighbours: dict[str, list[str]] = {}
    for caller, callee in edges:
        if caller != callee:
            source, target = (callee, caller) if upstream else (caller, callee)
            neighbours.setdefault(source, []).append(target)
    return neighbours


def breadth_first(
    source: Node, neighbours: Mapping[Node, Sequence[Node]]
) -> list[tuple[int, Node]]:
    """(hops, node) for every node reachable from ``source`` along ``neighbours`` (callees for
    what lies downstream, callers for upstream), nearest first, each once, ``source`` left out."""
    seen = {source}
    frontier = [source]
    reached: list[tuple[int, Node]] = []
    hops = 0
    while frontier:
        hops += 1
        frontier = [d for s in frontier for d in neighbours.get(s, ()) if d not in seen]
        frontier = list(dict.fromkeys(frontier))
        seen.update(frontier)
        reached += [(hops, d) for d in frontier]
    return reached


def mine_call_graph(
    frame: pd.DataFrame | None,
    services: Sequence[str],
    min_traces: int = MIN_TRACES,
    max_reversed: float = MAX_REVERSED,
) -> tuple[tuple[str, str], ...]:
    """(caller, callee) edges between ``services`` read from the trace ids of ``frame``'s rows.

    ``frame`` is a combined dataset (or its log events); rows without a trace id are ignored, and
    a frame without the ``trace_id`` column gives no edges. Edges come sorted, so the same logs
    always give the same graph.
    """
    if frame is None or TRACE_ID not in frame.columns or len(services) < 2:
        return ()
    spans = _service_spans(frame, services)
    pairs = spans.merge(spans, on=TRACE_ID, suffixes=("_caller", "_callee"))
    inside = (pairs["first_caller"] < pairs["first_callee"]) & (
        pairs["last_callee"] < pairs["last_caller"]
    )
    nested = pairs[inside]
    counts = Counter(zip(nested[f"{SERVICE}_caller"], nested[f"{SERVICE}_callee"], strict=True))
    return tuple(
        sorted(
            edge
            for edge, count in counts.items()
            if count >= min_traces and counts[edge[::-1]] <= max_reversed * count
        )
    )


def call_graph(
    configured: Sequence[tuple[str, str]], frame: pd.DataFrame | None, services: Sequence[str]
) -> tuple[tuple[str, str], ...]:
    """The configured edges when there are any (an operator's word beats an inference), else the
    graph learned from ``frame``'s trace ids (:func:`mine_call_graph`)."""
    if configured:
        return tuple(configured)
    return mine_call_graph(frame, services)


def _service_spans(frame: pd.DataFrame, services: Sequence[str]) -> pd.DataFrame:
    """``trace_id, service, first, last``: each service's first and last log time in each trace,
    for the traces that reach at least two of ``services``."""
    events = frame.loc[
        frame[TRACE_ID].notna() & frame[SERVICE].isin(services), [TRACE_ID, SERVICE, TIMESTAMP]
    ]
    times = events.groupby([TRACE_ID, SERVICE], sort=False)[TIMESTAMP]
    spans = pd.DataFrame({"first": times.min(), "last": times.max()}).reset_index()
    shared = spans.groupby(TRACE_ID)[SERVICE].transform("size") >= 2
    return spans[shared]
