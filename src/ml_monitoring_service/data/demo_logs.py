"""Log text for the demo's events: what each service would have written at that severity.

The demo's numbers (times, metrics, severities) are decided by ``data/demo.py``; this module only
puts words to them, from its own random stream, so adding text changed no number. What it writes:

* ordinary lines per service (requests handled, cache statistics, batches, sessions) with varying
  ids and the event's own latency, warnings (slow requests, retries, pools filling up) and a
  baseline of ordinary errors, some with a stack trace, so that errors alone are not news;
* during an injected incident, the root service's warnings and errors (and some of its ordinary
  lines) follow the incident's kind: heap pressure and ``OutOfMemoryError`` for a leak, query
  timeouts for a latency cascade, rejected work for spikes and noise, a bad release for a level
  shift; its errors mostly carry a multi-line exception trace, Java-style or Python-style
  depending on the service;
* affected callers' warnings and errors name the service they wait on
  (``upstream payment returned 503 ...``), which during a dropout is all that is heard of the
  silent root.

Frames carry random line numbers and exception messages carry ids, as in real traces, so that
grouping traces by their stack (not their text) is what log evidence has to do.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_monitoring_service.data.schema import SERVICE, SEVERITY, TIMESTAMP

if TYPE_CHECKING:  # demo.py imports this module
    from ml_monitoring_service.data.demo import Incident

# Share of info-level lines during an incident (root and callers) that show its symptoms.
_INCIDENT_INFO_SHARE = 0.4
# Share of errors that carry a stack trace: most incident errors, half of the ordinary ones.
_INCIDENT_TRACE_SHARE = 0.8
_NORMAL_TRACE_SHARE = 0.5

Fields = dict[str, str]


@dataclass(frozen=True)
class _Failure:
    """An error line and the exception behind it, in both languages."""

    line: str
    java_type: str
    java_message: str
    java_frames: tuple[str, ...]  # "Class.method" below the service's package, innermost first
    python_type: str
    python_message: str
    python_frames: tuple[tuple[str, str], ...]  # (module, function), innermost first


@dataclass(frozen=True)
class _Story:
    """What a service logs in one situation: info, warning and error templates, and a failure."""

    info: tuple[str, ...]
    warning: tuple[str, ...]
    error: tuple[str, ...]
    failure: _Failure


_NORMAL = _Story(
    info=(
        "{method} /{service}/{resource}/{id} {status} in {ms} ms request_id={uuid}",
        "cache stats: hits={count} misses={small} evictions={other}",
        "processed batch of {count} {resource} items in {ms} ms",
        "session {hex} refreshed for user u-{id}",
        "health check ok: {small} workers busy, queue depth {other}",
    ),
    warning=(
        "slow request {method} /{service}/{resource}/{id} took {slow_ms} ms (threshold 250 ms)",
        "retrying call to {peer} (attempt {attempt}/3) request_id={uuid}",
        "connection pool {resource}-pool at {pct}% capacity",
    ),
    error=(
        "request {uuid} failed: invalid {resource} id {id}",
        "unhandled error processing request {uuid}",
    ),
    failure=_Failure(
        line="unhandled error processing request {uuid}",
        java_type="java.lang.IllegalArgumentException",
        java_message="{resource} id must be positive, got -{id}",
        java_frames=("RequestValidator.validate", "RequestHandler.handle", "Router.dispatch"),
        python_type="KeyError",
        python_message="'{resource}-{id}'",
        python_frames=(("store", "lookup"), ("handlers", "handle"), ("app", "dispatch")),
    ),
)

_OVERLOAD = _Story(
    info=("request queue depth {count}, {small} workers busy",),
    warning=("worker pool saturated: {count} requests queued, shedding load",),
    error=("rejected request {uuid}: worker pool exhausted ({count} queued)",),
    failure=_Failure(
        line="rejected request {uuid}: worker pool exhausted ({count} queued)",
        java_type="java.util.concurrent.RejectedExecutionException",
        java_message="Task {hex} rejected from pool-{small}-thread executor",
        java_frames=("WorkerPool.submit", "RequestHandler.handle", "Router.dispatch"),
        python_type="queue.Full",
        python_message="",
        python_frames=(("workers", "submit"), ("handlers", "handle"), ("app", "dispatch")),
    ),
)

_INCIDENT_STORIES: dict[str, _Story] = {
    "memory_leak": _Story(
        info=("GC pause {ms} ms, heap {pct}% used after collection",),
        warning=("heap usage at {pct}% after full GC ({ms} ms pause)",),
        error=("out of memory while building {resource} response for request {uuid}",),
        failure=_Failure(
            line="out of memory while building {resource} response for request {uuid}",
            java_type="java.lang.OutOfMemoryError",
            java_message="Java heap space",
            java_frames=("ResponseCache.put", "ResponseBuilder.build", "RequestHandler.handle"),
            python_type="MemoryError",
            python_message="",
            python_frames=(("cache", "put"), ("render", "build"), ("handlers", "handle")),
        ),
    ),
    "latency_cascade": _Story(
        info=("waited {ms} ms for a database connection",),
        warning=("slow query on table {resource}: {ms} ms",),
        error=("query on table {resource} timed out after {ms} ms (request_id={uuid})",),
        failure=_Failure(
            line="query on table {resource} timed out after {ms} ms (request_id={uuid})",
            java_type="java.sql.SQLTimeoutException",
            java_message="Statement cancelled after {ms} ms",
            java_frames=("db.QueryRunner.execute", "Repository.find", "RequestHandler.handle"),
            python_type="psycopg2.errors.QueryCanceled",
            python_message="canceling statement due to statement timeout",
            python_frames=(("db", "execute"), ("repository", "find"), ("handlers", "handle")),
        ),
    ),
    "level_shift": _Story(
        info=("feature flag new-{resource}-pricing active for {pct}% of requests",),
        warning=("fallback pricing used for {resource} {id}: rule set {small} incomplete",),
        error=("cannot apply rule set {small} to {resource} {id}",),
        failure=_Failure(
            line="cannot apply rule set {small} to {resource} {id}",
            java_type="java.lang.ArithmeticException",
            java_message="/ by zero",
            java_frames=("rules.RuleEngine.apply", "Pricing.compute", "RequestHandler.handle"),
            python_type="ZeroDivisionError",
            python_message="division by zero",
            python_frames=(("rules", "apply"), ("pricing", "compute"), ("handlers", "handle")),
        ),
    ),
    "spike": _OVERLOAD,
    "noise": _OVERLOAD,
}

_UPSTREAM = _Story(
    info=("waiting on {peer}: {small} calls in flight",),
    warning=(
        "circuit breaker for {peer} is OPEN, failing fast",
        "call to {peer} took {ms} ms, retrying (attempt {attempt}/3)",
    ),
    error=("upstream {peer} returned 503 Service Unavailable after {ms} ms (request_id={uuid})",),
    failure=_Failure(
        line="upstream {peer} returned 503 Service Unavailable after {ms} ms (request_id={uuid})",
        java_type="java.net.ConnectException",
        java_message="Connection refused: {peer}/10.0.{small}.{other}:8080",
        java_frames=("client.UpstreamClient.call", "RequestHandler.handle", "Router.dispatch"),
        python_type="requests.exceptions.ConnectionError",
        python_message="HTTPConnectionPool(host='{peer}', port=8080): Max retries exceeded",
        python_frames=(("client", "call"), ("handlers", "handle"), ("app", "dispatch")),
    ),
)

_METHODS = ("GET", "GET", "GET", "POST", "PUT")
_STATUSES = ("200", "200", "200", "201", "204", "404")
_RESOURCES = ("order", "item", "user", "cart", "price", "stock")


def demo_messages(
    frame: pd.DataFrame,
    incidents: Sequence[Incident],
    edges: Sequence[tuple[str, str]],
    rng: np.random.Generator,
) -> pd.Series:
    """One log line per row of the demo ``frame`` (same index), consistent with its severity.

    ``incidents`` are the incidents injected into it; ``edges`` the call graph, to name whom a
    caller waits on. Only ``rng`` is drawn from.
    """
    n = len(frame)
    situation, peer = _situations(frame, incidents, edges)
    draws = _Draws(rng, n)
    latency = frame["latency"].to_numpy() if "latency" in frame.columns else np.full(n, 20.0)
    services = frame[SERVICE].to_numpy()
    severity = np.nan_to_num(frame[SEVERITY].to_numpy(), nan=0.0).astype(int)
    lines = [
        _line(i, str(services[i]), severity[i], situation[i], peer[i], latency[i], draws)
        for i in range(n)
    ]
    return pd.Series(lines, index=frame.index, dtype="str")


def _situations(
    frame: pd.DataFrame, incidents: Sequence[Incident], edges: Sequence[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """Per row: the story to tell (``normal``, an incident kind, ``upstream``) and the peer."""
    n = len(frame)
    situation = ["normal"] * n
    services = frame[SERVICE].to_numpy()
    times = frame[TIMESTAMP]
    callees: dict[str, list[str]] = {}
    for caller, callee in edges:
        callees.setdefault(caller, []).append(callee)
    peer = [callees.get(str(s), ["db"])[0] for s in services]
    for incident in incidents:
        inside = ((times >= incident.start) & (times < incident.end)).to_numpy()
        root, affected = incident.service, set(incident.affected_services)
        for i in np.flatnonzero(inside):
            service = str(services[i])
            if service == root:
                situation[i] = incident.kind
            elif service in affected:
                # Only callers hear of the trouble; an affected callee (busier, idler) does not.
                towards = [c for c in callees.get(service, []) if c in affected or c == root]
                if towards:
                    situation[i], peer[i] = "upstream", towards[0]
    return situation, peer


class _Draws:
    """Random choices and variables for every row, drawn up front in a fixed order."""

    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.template = rng.random(n)
        self.symptom = rng.random(n)
        self.trace = rng.random(n)
        self.ids = rng.integers(1_000, 999_999, n)
        self.counts = rng.integers(10, 5_000, n)
        self.small = rng.integers(1, 64, (n, 2))
        self.pct = rng.integers(70, 100, n)
        self.attempt = rng.integers(1, 4, n)
        self.words = rng.integers(0, 2**31, (n, 3))
        self.uuid = rng.integers(0, 2**63, (n, 2))
        self.lines = rng.integers(12, 400, (n, 4))

    def fields(self, i: int, service: str, peer: str, latency: float) -> Fields:
        a, b, c = (int(w) for w in self.words[i])
        u, v = (int(x) for x in self.uuid[i])
        x = f"{u:016x}{v:016x}"
        return {
            "service": service,
            "peer": peer,
            "method": _METHODS[a % len(_METHODS)],
            "status": _STATUSES[b % len(_STATUSES)],
            "resource": _RESOURCES[c % len(_RESOURCES)],
            "id": str(self.ids[i]),
            "count": str(self.counts[i]),
            "small": str(self.small[i, 0]),
            "other": str(self.small[i, 1]),
            "pct": str(self.pct[i]),
            "attempt": str(self.attempt[i]),
            "ms": str(max(1, round(float(latency) * (1.0 + (a % 7) / 10.0)))),
            "slow_ms": str(251 + round(float(latency) * (4 + a % 9))),
            "hex": f"{u:016x}",
            "uuid": f"{x[:8]}-{x[8:12]}-4{x[13:16]}-a{x[17:20]}-{x[20:]}",
        }


def _line(
    i: int, service: str, severity: int, situation: str, peer: str, latency: float, draws: _Draws
) -> str:
    """The text of row ``i``."""
    incident = situation != "normal"
    story = _UPSTREAM if situation == "upstream" else _INCIDENT_STORIES.get(situation, _NORMAL)
    if severity == 0 and draws.symptom[i] >= _INCIDENT_INFO_SHARE:
        story = _NORMAL  # most ordinary lines stay ordinary, even during an incident
    fields = draws.fields(i, service, peer, latency)
    pool = (story.info, story.warning, story.error)[min(severity, 2)]
    share = _INCIDENT_TRACE_SHARE if incident else _NORMAL_TRACE_SHARE
    if severity >= 2 and draws.trace[i] < share:
        return _trace(story.failure, service, fields, draws.lines[i])
    return pool[int(draws.template[i] * len(pool))].format(**fields)


def _trace(failure: _Failure, service: str, fields: Fields, lines: np.ndarray) -> str:
    """The failure's error line followed by its exception trace in the service's language."""
    head = failure.line.format(**fields)
    render: Callable[[_Failure, str, Fields, np.ndarray], str] = (
        _java_trace if _is_java(service) else _python_trace
    )
    return f"{head}\n{render(failure, service, fields, lines)}"


def _is_java(service: str) -> bool:
    """Half the services are JVM services; stable for any service name."""
    return zlib.crc32(service.encode()) % 2 == 0


def _package(service: str) -> str:
    return "".join(ch for ch in service.lower() if ch.isalnum()) or "svc"


def _java_trace(failure: _Failure, service: str, fields: Fields, lines: np.ndarray) -> str:
    message = failure.java_message.format(**fields)
    text = [f"{failure.java_type}: {message}" if message else failure.java_type]
    for frame, line in zip(failure.java_frames, lines, strict=False):
        source = frame.rsplit(".", 2)[-2]  # the class's simple name: its file
        text.append(f"\tat com.shop.{_package(service)}.{frame}({source}.java:{line})")
    text.append(f"\t... {int(lines[-1]) % 40 + 5} more")
    return "\n".join(text)


def _python_trace(failure: _Failure, service: str, fields: Fields, lines: np.ndarray) -> str:
    text = ["Traceback (most recent call last):"]
    frames = list(zip(failure.python_frames, lines, strict=False))[::-1]  # innermost call last
    calls = [function for (_, function), _ in frames[1:]] + ["_load"]
    for ((module, function), line), call in zip(frames, calls, strict=True):
        text.append(f'  File "/app/{_package(service)}/{module}.py", line {line}, in {function}')
        text.append(f"    return {call}(request)")
    message = failure.python_message.format(**fields)
    text.append(f"{failure.python_type}: {message}" if message else failure.python_type)
    return "\n".join(text)
