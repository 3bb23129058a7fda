"""Judge detectors against a list of injected faults: detection, delay and root-cause rank.

Fault-injection recordings (Nezha and the like) say *when* a fault was injected and *into which
service*, not how long its effect lasted. Two durations turn that into something to score, chosen
once for every recording and detector:

* **fault window** ``[t, t + 5 min)``, cut short at the next injection. A fault is *detected* when a
  window that ends inside it scores above the detector's persisted threshold; the delay is from
  ``t`` to the first such window end. Five minutes is long enough for a one-minute metric to show
  the fault (samples lag by up to a minute, effects by one or two more) and short enough that an
  alert still helps an operator and does not reach into the next injection (injections are 4–9
  minutes apart in Nezha). Root-cause ranking uses the same windows, so it looks at the fault's
  early minutes, before it has spread to the callers.
* **recovery** ``[t, t + 15 min)``: after this the system is taken to be back to normal. Time
  outside every recovery span is *quiet*: training data come from a quiet stretch
  (``training_range``), and an alert in quiet time is a false alarm. Faults in Nezha visibly
  last 3–7 minutes, so 15 minutes leaves twice the longest for the aftermath.

Only window ends count (``start <= end_time < stop``), never overlap: a window overlapping the
fault window would reach back into the previous fault, and forward into the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.data.pod_recordings import InjectedFault
from ml_monitoring_service.data.schema import TIMESTAMP
from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.explain.log_evidence import LogEvidence, log_evidence
from ml_monitoring_service.metric_roles import NO_ROLES, MetricRoles
from ml_monitoring_service.prepare.densify import ServiceTensor
from ml_monitoring_service.prepare.normalise import RobustScaler
from ml_monitoring_service.rootcause import rank_period

FAULT_WINDOW = pd.Timedelta(minutes=5)
RECOVERY = pd.Timedelta(minutes=15)
MIN_TRAINING = pd.Timedelta(hours=1)
TOP_K = (1, 3, 5)
LOG_LOOKBACK = pd.Timedelta(hours=1)  # log history the ranking sees, like a 1-h inference lookback


@dataclass(frozen=True)
class FaultWindow:
    """The span ``[start, stop)`` a fault injected into ``service`` at ``start`` is judged on."""

    service: str
    kind: str
    start: pd.Timestamp
    stop: pd.Timestamp


@dataclass(frozen=True)
class FaultOutcome:
    """One detector on one fault; ``None`` where no window ends inside the fault window."""

    detected: bool | None
    delay_minutes: float | None
    rank: int | None


def fault_windows(
    faults: Sequence[InjectedFault], length: pd.Timedelta = FAULT_WINDOW
) -> list[FaultWindow]:
    """``[t, t + length)`` per fault, each cut short at the next injection."""
    ordered = sorted(faults, key=lambda f: f.time)
    stops = [f.time + length for f in ordered]
    for i in range(len(ordered) - 1):
        stops[i] = min(stops[i], ordered[i + 1].time)
    return [FaultWindow(f.service, f.kind, f.time, s) for f, s in zip(ordered, stops, strict=True)]


def quiet_stretches(
    injections: Sequence[pd.Timestamp],
    first: pd.Timestamp,
    last: pd.Timestamp,
    recovery: pd.Timedelta = RECOVERY,
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Maximal stretches of ``[first, last)`` outside every ``[t, t + recovery)``, half-open."""
    stretches: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    cursor = first
    for t in sorted(injections):
        if t > cursor:
            stretches.append((cursor, min(t, last)))
        cursor = max(cursor, t + recovery)
    if cursor < last:
        stretches.append((cursor, last))
    return [(a, b) for a, b in stretches if a < b]


def training_range(
    injections: Sequence[pd.Timestamp], first: pd.Timestamp, last: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The quiet stretch to learn normal behaviour from, chosen from the injection times alone.

    The longest quiet stretch *between* the first and the last injection when it lasts at least
    ``MIN_TRAINING``, because it runs under the same load as the faults: outside the injection
    campaign the load may differ (Nezha's Train Ticket day stops most of its traffic right after
    the last injection, so the quiet evening is idle). Otherwise the longest quiet stretch.
    """
    stretches = quiet_stretches(injections, first, last)
    if not stretches:
        raise ValueError(f"no time in [{first}, {last}) is {RECOVERY} clear of an injection")
    campaign = [
        (a, b)
        for a, b in stretches
        if a > min(injections) and b <= max(injections) and b - a >= MIN_TRAINING
    ]
    return max(campaign or stretches, key=lambda s: s[1] - s[0])


def judge(
    result: ScoreResult,
    window: FaultWindow,
    edges: Sequence[tuple[str, str]] = (),
    logs: pd.DataFrame | None = None,
    roles: MetricRoles = NO_ROLES,
    evidence_cache: dict[tuple[pd.Timestamp, pd.Timestamp], LogEvidence] | None = None,
) -> FaultOutcome:
    """Detection, delay and the injected service's rank in the shipped root-cause ranking.

    ``edges`` (caller, callee) is the recording's call graph; without one the ranking is by
    summed service score. ``logs`` (the recording's log events) lets the ranking see services
    that fell silent or complain in their logs, as the inference pipeline does; it sees the
    ``LOG_LOOKBACK`` before the fault's windows, as a daemon would. ``roles`` are the recording's
    client-side and traffic metrics (:class:`metric_roles.MetricRoles`). ``evidence_cache``,
    shared between the detectors of one recording, keeps the log evidence per span of windows: it
    depends on the logs and the span only, and mining it dominates judging on a day with many log
    lines.
    """
    inside = _ends_inside(result.ends, window)
    if not inside.any():
        return FaultOutcome(None, None, None)
    alerts = inside & result.is_anomalous
    delay = None
    if alerts.any():
        delay = (result.ends[int(np.argmax(alerts))] - window.start) / pd.Timedelta(minutes=1)
    evidence = None
    if logs is not None:
        span = (result.starts[inside][0], result.ends[inside][-1])
        logs = logs[(logs[TIMESTAMP] >= span[0] - LOG_LOOKBACK) & (logs[TIMESTAMP] <= span[1])]
        if evidence_cache is not None:
            if span not in evidence_cache:
                evidence_cache[span] = log_evidence(logs, *span, result.services)
            evidence = evidence_cache[span]
    ranking = [c.service for c in rank_period(result, inside, edges, logs, evidence, roles)]
    return FaultOutcome(bool(alerts.any()), delay, _rank(ranking, window.service))


def zscore_ranks(
    train: ServiceTensor,
    scored: ServiceTensor,
    windows: Sequence[FaultWindow],
    metrics: Sequence[str],
) -> list[int | None]:
    """Root-cause baseline: services by their largest |robust z| of any metric in each window.

    Median and IQR come from ``train`` only; no clipping, so two far-off services are still told
    apart. Only the recorded metrics count (not severity or observation counts).
    """
    columns = [scored.features.index(m) for m in metrics]
    scaler = RobustScaler(clip=np.inf).fit(train.values[:, :, columns])
    z = np.abs(scaler.transform(scored.values[:, :, columns]))
    ranks: list[int | None] = []
    for window in windows:
        inside = _ends_inside(scored.timestamps, window)
        if not inside.any():
            ranks.append(None)
            continue
        order = np.argsort(-z[inside].max(axis=(0, 2)), kind="stable")
        ranks.append(_rank([scored.services[i] for i in order], window.service))
    return ranks


def alarm_counts(
    result: ScoreResult,
    injections: Sequence[pd.Timestamp],
    training: tuple[pd.Timestamp, pd.Timestamp],
) -> dict[str, int]:
    """Windows ending outside the training range: all, alerting, quiet, and alerting while quiet.

    ``false_alarms / quiet_windows`` is the false-alarm rate; where injections come every few
    minutes, most windows are disturbed and ``alerts`` alone says little.
    """
    ends = result.ends
    disturbed = np.zeros(len(ends), dtype=bool)
    for t in injections:
        disturbed |= np.asarray((ends >= t) & (ends < t + RECOVERY))
    judged = ~np.asarray((ends >= training[0]) & (ends < training[1]))
    alerts = result.is_anomalous & judged
    return {
        "windows": int(judged.sum()),
        "alerts": int(alerts.sum()),
        "quiet_windows": int((judged & ~disturbed).sum()),
        "false_alarms": int((alerts & ~disturbed).sum()),
    }


def summarise(outcomes: Sequence[FaultOutcome]) -> dict[str, float | int | None]:
    """Detection rate, mean delay, AC@1/3/5 and Avg@5 over the faults that could be scored."""
    scorable = [o for o in outcomes if o.detected is not None]
    delays = [o.delay_minutes for o in scorable if o.delay_minutes is not None]
    summary: dict[str, float | int | None] = {
        "faults": len(outcomes),
        "scorable": len(scorable),
        "detected": sum(bool(o.detected) for o in scorable),
        "detection_rate": _mean([float(bool(o.detected)) for o in scorable]),
        "mean_delay_min": _mean(delays),
    }
    return {**summary, **accuracy_at_k([o.rank for o in scorable])}


def accuracy_at_k(ranks: Sequence[int | None]) -> dict[str, float | None]:
    """AC@k (share of faults whose service ranks in the top k) and Avg@5 (mean of AC@1..5)."""
    known = [r for r in ranks if r is not None]
    at = {k: _mean([float(r <= k) for r in known]) for k in range(1, 6)}
    result: dict[str, float | None] = {f"ac@{k}": at[k] for k in TOP_K}
    result["avg@5"] = None if at[1] is None else float(np.mean([at[k] for k in range(1, 6)]))
    return result


def _ends_inside(ends: pd.DatetimeIndex, window: FaultWindow) -> np.ndarray:
    return np.asarray((ends >= window.start) & (ends < window.stop))


def _rank(ranking: Sequence[str], service: str) -> int | None:
    """1-based position of ``service``; ``None`` when the set does not monitor it."""
    return ranking.index(service) + 1 if service in ranking else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None
