"""Suggested checks for an incident report: what an on-call engineer should look at first.

The checks are generic runbook steps, made specific by the metric's kind (read from its name, as
metric names are free-form configuration), the direction it moved, the suspected origin and the
services the ranking says are only echoes of it. They are suggestions, not conclusions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ml_monitoring_service.prepare.densify import SILENCE_FEATURES, SINCE_EVENT

# Silence features read upside down: a larger gap since the last event means fewer events.
_FEWER_EVENTS_WHEN_UP = (SINCE_EVENT,)
# metric kind -> words that mark a metric name as that kind (first match wins, in this order)
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("silence", SILENCE_FEATURES),
    ("log_severity", ("severity",)),
    ("errors", ("error", "fail", "5xx", "exception")),
    ("latency", ("latency", "duration", "response_time", "p95", "p99", "rtt")),
    ("traffic", ("request", "rps", "qps", "throughput", "traffic")),
    ("cpu", ("cpu",)),
    ("memory", ("mem", "heap", "rss")),
)


def metric_kind(metric: str) -> str:
    """``latency``, ``errors``, ``traffic``, ``cpu``, ``memory``, ``silence``, ``log_severity``
    or ``other``, from the metric's name."""
    name = metric.lower()
    return next((kind for kind, words in _KINDS if any(w in name for w in words)), "other")


def _check(kind: str, direction: str | None, service: str, callees: Sequence[str]) -> str:
    """One runbook line for ``service`` whose metric of ``kind`` moved in ``direction``."""
    deps = ", ".join(callees) if callees else "its databases and external dependencies"
    if kind == "silence" and direction != "up":
        return (
            f"Is {service} up? Check its pods/instances and restarts, then whether metric "
            f"scraping and log shipping for {service} still work (a silent service can be "
            "healthy but unseen)."
        )
    checks = {
        "silence": f"{service} logs far more events than usual: look for retry loops or a log "
        "storm, and at what its newest log lines repeat.",
        "log_severity": f"Read the warnings and errors {service} logged since the onset; compare "
        "with the messages before it.",
        "errors": f"Check recent deploys and configuration changes of {service}, and its error "
        f"logs since the onset; then whether calls to {deps} fail.",
        "latency": f"Check {service}'s dependencies ({deps}) and its saturation (CPU throttling, "
        "thread/connection pools, queue depth, GC pauses).",
        "traffic": f"Check the traffic reaching {service}: callers' request volume, load balancer "
        "and rate limits, retries amplifying load.",
        "cpu": f"Check {service}'s CPU saturation and throttling, a hot loop or a traffic change, "
        "and its latest deploy.",
        "memory": f"Check {service} for a memory leak or cache growth (heap/RSS trend, OOM kills, "
        "GC time) and its latest deploy.",
    }
    return checks.get(kind, f"Inspect {service}'s dashboards and logs around the onset.")


def _event_rate_direction(deviation: Mapping[str, Any]) -> str | None:
    """The deviation's direction, turned over for a metric that rises when events thin out, so
    ``up`` on a silence metric always means more events than usual."""
    direction = deviation["direction"]
    if direction is None or not any(w in deviation["metric"] for w in _FEWER_EVENTS_WHEN_UP):
        return direction
    return "down" if direction == "up" else "up"


def suggested_checks(
    candidates: Sequence[Mapping[str, Any]], edges: Sequence[tuple[str, str]]
) -> list[str]:
    """Checks for the top candidate's most deviating metrics, then cross-checks for explained ones.

    ``candidates`` are the incident's candidate dicts (``metric_deviations`` already filled);
    one line per distinct (service, metric kind), at most two metric kinds per candidate.
    """
    callees: dict[str, list[str]] = {}
    for caller, callee in edges:
        callees.setdefault(caller, []).append(callee)
    checks: list[str] = []
    leads = [c for rank, c in enumerate(candidates) if rank == 0 or c["explained_by"] is None]
    for candidate in leads:
        service = candidate["service"]
        kinds: list[tuple[str, str | None]] = []
        for deviation in candidate["metric_deviations"]:
            kind = metric_kind(deviation["metric"])
            if kind not in (k for k, _ in kinds) and len(kinds) < 2:
                kinds.append((kind, _event_rate_direction(deviation)))
        for kind, direction in kinds:
            line = _check(kind, direction, service, callees.get(service, []))
            if line not in checks:
                checks.append(line)
    for candidate in candidates:
        origin = candidate["explained_by"]
        if origin is not None:
            checks.append(
                f"Compare with {candidate['service']}, which is explained by {origin}: if "
                f"{candidate['service']} recovers once {origin} does, it was only an echo."
            )
    return checks
