"""Graph-aware root-cause ranking for one anomalous period.

Services are ranked by their summed service score over the period's windows (as
:func:`pipeline.periods.rank_services` does), then a service whose anomaly is *explained* by a
callee is pushed below the unexplained ones. A caller is explained when one of the services it
calls, directly or through other callees, is anomalous in the period and deviated at least
``lead`` (a fraction of a window's duration, ``ONSET_LEAD``: an eighth) before the caller did:
slowness and failed calls flow up the call graph, from callee to caller, so the caller's larger
score is usually the echo and the quieter callee the cause. The lead is a time, not a count of
windows: on the ``event`` variant windows end about a second apart, and a callee whose
reconstruction error crossed its level one window (a second) earlier is jitter, not an order
(the synthetic benchmark's demo cascades and drifts, docs/BENCHMARKS.md §1). On a one-minute
grid with windows of eight steps an eighth of a window is one window, as before.

A service's *client-side* metrics (``client_metrics``: what it measures about the calls it
makes, such as client latency) are the callees' story told by the caller. A service whose most
anomalous metric is one of them is explained by a callee that deviated in the same window or
earlier: at one-minute resolution the callee and its callers cross their levels together, and the
caller's own measurement already says where the time went.

A service's *traffic* metrics (``traffic_metrics``: request rates, bytes in and out) count a
third (``metric_roles.TRAFFIC_WEIGHT``) in the ranking. Under a closed-loop load (users and
clients that wait for an answer before asking again) a slowdown anywhere lowers the request rate
everywhere, and a caller that fails early stops calling its other callees: traffic moves in
services that merely share a caller with the culprit, so it says *that* something broke more than
*where*. Detection is unchanged; only the ranking weighs them down. On Nezha's Online Boutique
days AC@1 / AC@3 rose from 0.821 / 0.946 to 0.839 / 0.982 (any weight from 0.2 to 0.5 gives the
same; none at all, 0.821 / 0.964), and the PCA and z-score detectors' rankings gained too
(docs/BENCHMARKS.md §4).

*Onset* is the first window of the period whose service score exceeds the service's normal
``level`` (default: the detector's persisted window threshold, as a service score is the largest of
its metric scores and the window threshold is on the same scale). A service that never exceeds its
level in the period is not anomalous: it explains nothing and needs no explaining.

*Silence* (``explain/silence.py``, when the period's log events are given) outranks every score:
a service that stopped logging is down, and a down service's gauges are forward-filled and look
normal while its callers fill with errors. Silence flows the other way from slowness: a silent
service's callees lose their traffic and fall quiet too, so a silent service with a silent caller
(directly or further up) is explained by that caller and ranks below it.

*Log complaints* come next (``explain/log_evidence.py``): among the services that are not silent,
those whose own warning/error lines rose beyond their baseline rate, or that threw exceptions not
seen before, rank above those that did not, each group keeping the order above. Scores say where
the data moved; a service writing new errors about itself is usually the one that broke.

*Missing log lines* come after complaints: among the rest, services that stopped writing some of
their usual statements while still logging (``ServiceEvidence.missing_lines``) rank above those
that did not. A code path that broke inside a service without an error line of its own (an
exception swallowed into an error response, an early return) shows there and nowhere else; its
callers usually complain, which is why complaints still come first. A caller whose call fails
takes another path too and misses lines of its own: among the services missing lines, one with a
callee (directly or further down) that misses lines as well ranks below those without, as the
likely echo. On Nezha's Train Ticket day (no call graph recorded, root metrics barely moving)
the missing group raised AC@3 from 0.536 to 0.714, the echo rule to 0.750 (docs/BENCHMARKS.md
§4).

Each candidate carries a confidence in [0, 1] (its share of the summed scores, explained services
discounted, made non-increasing down the ranking, so the confidences sum to at most 1) and short
evidence an operator can check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.explain.call_graph import adjacency, breadth_first, call_graph
from ml_monitoring_service.explain.log_evidence import LogEvidence, log_evidence
from ml_monitoring_service.explain.silence import Silence, silences
from ml_monitoring_service.metric_roles import NO_ROLES, MetricRoles

EXPLAINED_WEIGHT = 0.1  # confidence weight of an explained service relative to its score share
ONSET_LEAD = 0.125  # how much earlier a callee's onset must be, as a share of a window's duration


@dataclass(frozen=True)
class Candidate:
    """One ranked root-cause candidate: a service, its most anomalous metric, and why."""

    service: str
    metric: str
    score: float  # summed service score over the period's windows, traffic metrics weighed down
    confidence: float
    onset: pd.Timestamp | None  # end of the first window above the service's level
    explained_by: str | None  # the anomalous service that explains this one, if any
    silence: Silence | None = None  # set when the service stopped logging in the period
    log_problems: float = 0.0  # warning/error log lines beyond its baseline rate, new traces
    missing_lines: float = 0.0  # usual log lines it no longer wrote, for its own volume
    missing_below: str | None = None  # a callee (or further down) missing usual lines too

    @property
    def evidence(self) -> str:
        """One line: silence, summed score, onset and the dependency that explains it."""
        onset = "never above its normal level" if self.onset is None else f"onset {self.onset}"
        text = f"summed score {self.score:.1f}, {onset}, top metric {self.metric}"
        if self.missing_lines > 0:
            text = f"{self.missing_lines:.0f} of its usual log lines missing; {text}"
            if self.missing_below is not None:
                text += f"; its callee {self.missing_below} misses usual lines too"
        if self.log_problems > 0:
            text = f"{self.log_problems:.0f} more warning/error log lines than usual; {text}"
        if self.silence is not None:
            text = f"silent: {self.silence.describe}; {text}"
            if self.explained_by is not None:
                text += f"; its caller {self.explained_by} is silent too"
        elif self.explained_by is not None:
            text += f"; explained by anomalous callee {self.explained_by}"
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form used in the inference summary."""
        return {
            "service": self.service,
            "metric": self.metric,
            "confidence": round(self.confidence, 4),
            "onset": None if self.onset is None else self.onset.isoformat(),
            "evidence": self.evidence,
        }


def rank_root_causes(
    result: ScoreResult,
    windows: np.ndarray,
    edges: Sequence[tuple[str, str]] = (),
    levels: np.ndarray | None = None,
    lead: float = ONSET_LEAD,
    silent: Mapping[str, Silence] | None = None,
    log_problems: Mapping[str, float] | None = None,
    roles: MetricRoles = NO_ROLES,
    missing_lines: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Every service of ``result``, most likely root cause first.

    ``windows`` is the period as bool ``[N]``; ``edges`` are (caller, callee) pairs (unknown
    services are ignored; none gives the plain summed-score ranking); ``levels`` ``[S]`` is each
    service's normal level (default: ``result.threshold`` for every service); a callee explains a
    caller only when its onset is at least ``lead`` window durations earlier. ``silent`` are the
    services that stopped logging in the period (:func:`explain.silence.silences`);
    ``log_problems`` each service's excess of warning/error log lines
    (``ServiceEvidence.problem_excess``);
    ``missing_lines`` each service's shortfall of usual lines (``ServiceEvidence.missing_lines``);
    ``roles`` names the client-side metrics (a service whose most anomalous metric is one of them
    is explained with no lead) and the traffic metrics (weighed down) among the features.
    """
    scores, metric_scores = roles.ranking_scores(result, windows)  # [W, S], [W, S, F]
    totals = scores.sum(axis=0)
    level = np.full(len(result.services), result.threshold) if levels is None else levels
    onsets = _onsets(scores, level)
    quiet = [name in (silent or {}) for name in result.services]
    peaks = metric_scores.max(axis=0)  # [S, F]
    tops = [result.features[int(np.argmax(peaks[s]))] for s in range(len(result.services))]
    ends = result.ends[windows]
    times = [_onset_time(ends, onset) for onset in onsets]
    width = pd.Series(result.ends - result.starts).median() if len(result.ends) else pd.Timedelta(0)
    step = max(width * lead, pd.Timedelta(1, "ns"))  # strictly earlier, however short the windows
    leads = [pd.Timedelta(0) if top in roles.client else step for top in tops]
    explained = _explained_by(result.services, edges, times, leads, totals)
    for s, caller in enumerate(_nearest_flagged(result.services, edges, quiet, upstream=True)):
        if quiet[s]:
            explained[s] = caller
    complains = [(log_problems or {}).get(name, 0.0) > 0 for name in result.services]
    missing = [(missing_lines or {}).get(name, 0.0) > 0 for name in result.services]
    echoes = _nearest_flagged(result.services, edges, missing, upstream=False)
    order = sorted(
        range(len(totals)),
        key=lambda s: (
            not quiet[s],
            not complains[s],
            not missing[s],
            missing[s] and echoes[s] is not None,
            explained[s] is not None,
            -totals[s],
        ),
    )
    confidences = _confidences(totals, [explained[s] is not None for s in order], order, quiet)
    return [
        Candidate(
            service=result.services[s],
            metric=tops[s],
            score=float(totals[s]),
            confidence=confidences[rank],
            onset=_onset_time(ends, onsets[s]),
            explained_by=explained[s],
            silence=None if silent is None else silent.get(result.services[s]),
            log_problems=(log_problems or {}).get(result.services[s], 0.0),
            missing_lines=(missing_lines or {}).get(result.services[s], 0.0),
            missing_below=echoes[s] if missing[s] else None,
        )
        for rank, s in enumerate(order)
    ]


def rank_period(
    result: ScoreResult,
    windows: np.ndarray,
    edges: Sequence[tuple[str, str]] = (),
    frame: pd.DataFrame | None = None,
    evidence: LogEvidence | None = None,
    roles: MetricRoles = NO_ROLES,
) -> list[Candidate]:
    """:func:`rank_root_causes` for the span of ``windows``, with the silences and log complaints
    in it read from the log events of ``frame`` (the scored combined dataset; its events before
    the span are the baseline). ``evidence`` is the span's log evidence if already mined. Without
    ``frame`` only the scores and the graph count. Without ``edges``, the call graph is learned
    from the trace ids of ``frame``'s log events (:func:`explain.call_graph.mine_call_graph`),
    where it has any."""
    if frame is None:
        return rank_root_causes(result, windows, edges, roles=roles)
    edges = call_graph(edges, frame, result.services)
    span = (result.starts[windows][0], result.ends[windows][-1])
    if evidence is None:
        evidence = log_evidence(frame, *span, result.services)
    return rank_root_causes(
        result,
        windows,
        edges,
        silent=silences(frame, *span, result.services),
        log_problems={name: ev.problem_excess for name, ev in evidence.services.items()},
        roles=roles,
        missing_lines={name: ev.missing_lines for name, ev in evidence.services.items()},
    )


def _onset_time(ends: pd.DatetimeIndex, onset: int | None) -> pd.Timestamp | None:
    return None if onset is None else ends[onset]


def _onsets(scores: np.ndarray, level: np.ndarray) -> list[int | None]:
    """Per service, the index of the first window above its level; ``None`` if none is."""
    above = scores > level[None, :]
    return [int(np.argmax(above[:, s])) if above[:, s].any() else None for s in range(len(level))]


def _explained_by(
    services: Sequence[str],
    edges: Sequence[tuple[str, str]],
    onsets: Sequence[pd.Timestamp | None],
    leads: Sequence[pd.Timedelta],
    totals: np.ndarray,
) -> list[str | None]:
    """Per anomalous service, a downstream service whose onset is at least the service's
    ``leads`` entry earlier, or ``None``.

    Downstream means reachable along caller → callee edges; the earliest such service is named
    (ties: the nearest, then the largest summed score).
    """
    callees = _adjacency(services, edges)
    found: list[str | None] = []
    for s, onset in enumerate(onsets):
        best: tuple[pd.Timestamp, int, float, int] | None = None  # (onset, hops, -score, service)
        for hops, d in breadth_first(s, callees):
            d_onset = onsets[d]
            if onset is not None and d_onset is not None and d_onset + leads[s] <= onset:
                key = (d_onset, hops, -float(totals[d]), d)
                best = key if best is None or key < best else best
        found.append(None if best is None else services[best[3]])
    return found


def _nearest_flagged(
    services: Sequence[str],
    edges: Sequence[tuple[str, str]],
    flagged: Sequence[bool],
    upstream: bool,
) -> list[str | None]:
    """Per service, the nearest flagged service among its callers and their callers
    (``upstream``) or among its callees and theirs."""
    neighbours = _adjacency(services, edges, upstream)
    return [
        next((services[u] for _, u in breadth_first(s, neighbours) if flagged[u]), None)
        for s in range(len(services))
    ]


def _adjacency(
    services: Sequence[str], edges: Sequence[tuple[str, str]], upstream: bool = False
) -> dict[int, list[int]]:
    """Per service index, the indices of its callees (or callers, ``upstream``); edges naming an
    unknown service, and self-calls, are left out."""
    index = {name: i for i, name in enumerate(services)}
    named = adjacency([(a, b) for a, b in edges if a in index and b in index], upstream)
    return {i: [index[n] for n in named.get(name, [])] for i, name in enumerate(services)}


def _confidences(
    totals: np.ndarray, explained: Sequence[bool], order: Sequence[int], quiet: Sequence[bool]
) -> list[float]:
    """Score shares in ranking ``order``, explained ones discounted, made non-increasing.

    A silent service weighs at least as much as the largest score: its own scores understate it.
    """
    top = float(totals.max()) if len(totals) else 0.0
    weights = np.array(
        [
            max(totals[s], top if quiet[s] else 0.0) * (EXPLAINED_WEIGHT if e else 1.0)
            for s, e in zip(order, explained, strict=True)
        ]
    )
    weights = np.clip(weights, 0.0, None)
    shares = weights / weights.sum() if weights.sum() > 0 else np.zeros_like(weights)
    return [float(c) for c in np.minimum.accumulate(shares)]
