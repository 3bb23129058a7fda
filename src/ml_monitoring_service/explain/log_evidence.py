"""Log evidence for an anomalous period: which log templates and exceptions are new or rising.

A metric says *that* a service misbehaved; its log lines often say *how*. For each service this
compares the anomalous period (``start <= timestamp <= end``) with the baseline before it:

* templates (``log_templates.py``) are mined over baseline and period together, so a line means
  the same template in both, then counted per side, with "problems" the warning and error lines
  (``severity_level >= 1``);
* exception traces (``traces.py``) are grouped by fingerprint and counted the same way.

A template or exception is reported when it is **new** (never seen in the baseline) or when its
problems **rose**: the period's count is implausible under the baseline rate scaled to the
period's length (Poisson tail probability below ``_RISE_P``, 0.1 %), so one ordinary error in a
quiet period is not news, while a burst of them is. Lengths are the time logs were being
collected (``_collected``), so a gap in collection does not dilute the baseline rate. At most
``MAX_ITEMS`` per service are kept, the largest excess of problems over the expected count first,
then new ones, then the most frequent.

A template is **missing** when the service kept writing it in the baseline, mostly below warning
level, and the period has implausibly few of its lines (same tail probability, the other way)
*for the service's own volume*: the expected count is the template's baseline share of the
period's lines of such usual templates (errors that stop are a recovery, and a burst of errors
must not make the usual lines look rare). A service that lost traffic writes less of everything
and misses nothing; one whose code path broke between two statements (an exception thrown after
the first, a call returning early) still writes the first and no longer the second. Errors say
that a service noticed a problem; a missing statement says where the requests stopped going the
usual way, often in a service that logged no error at all (Nezha's Train Ticket ``exception``
faults: ``TravelServiceImpl#457`` stops while ``#451`` goes on).

Examples are masked; nothing unmasked leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import poisson

from ml_monitoring_service.data.schema import MESSAGE, SERVICE, SEVERITY, TIMESTAMP
from ml_monitoring_service.explain.log_templates import (
    MinedTemplates,
    first_lines,
    mask,
    message_text,
    mine_templates,
)
from ml_monitoring_service.explain.traces import Trace, parse_trace

MAX_ITEMS = 5
_RISE_P = 0.001  # strict: each call tests dozens of templates, most of them ordinary
_MIN_PERIOD = pd.Timedelta("1s")
# In a service set that typically logs _DENSE_GAPS lines per _COLLECTION_GAP or more, a stretch
# longer than _COLLECTION_GAP without any line is a gap in collection, not quiet (_collected).
_COLLECTION_GAP = pd.Timedelta("1min")
_DENSE_GAPS = 10


@dataclass(frozen=True)
class TemplateEvidence:
    """A log template whose lines are new in the period or whose problems rose."""

    template: str
    baseline_count: int
    period_count: int
    baseline_problems: int
    period_problems: int
    new: bool
    example: str


@dataclass(frozen=True)
class MissingTemplate:
    """A log template the service wrote steadily before and far less than expected in the period."""

    template: str
    baseline_count: int
    period_count: int
    expected_count: float  # its baseline share of the period's lines of known templates
    example: str  # its first line in the baseline, masked


@dataclass(frozen=True)
class ExceptionEvidence:
    """A group of exception traces with one fingerprint (type + innermost frames)."""

    fingerprint: str
    type: str
    frames: list[str]
    baseline_count: int
    period_count: int
    new: bool
    example: str


@dataclass(frozen=True)
class ServiceEvidence:
    """One service's log lines counted on both sides, and what stood out."""

    baseline_events: int = 0
    period_events: int = 0
    templates: list[TemplateEvidence] = field(default_factory=list)
    exceptions: list[ExceptionEvidence] = field(default_factory=list)
    # Warning/error lines beyond what the baseline rate predicts, over the reported templates,
    # plus the traces of new exceptions: the size of the service's own complaint, for ranking.
    problem_excess: float = 0.0
    missing_templates: list[MissingTemplate] = field(default_factory=list)
    # Expected minus seen lines over every missing template (not only the reported ones).
    missing_lines: float = 0.0


@dataclass(frozen=True)
class LogEvidence:
    """Evidence per configured service (an empty :class:`ServiceEvidence` where nothing logged)."""

    services: dict[str, ServiceEvidence]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape documented in ``ARCHITECTURE.md`` (plain ints, strings and lists)."""
        return {"services": {name: asdict(ev) for name, ev in self.services.items()}}


@dataclass(frozen=True)
class _Sides:
    """Which rows of one service fall in the baseline and in the period, and the time ratio."""

    baseline: np.ndarray
    period: np.ndarray
    problem: np.ndarray
    ratio: float  # period length / baseline length (0 without a baseline: nothing is expected)


def log_evidence(
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    services: Sequence[str],
    baseline_start: pd.Timestamp | None = None,
) -> LogEvidence:
    """Log evidence of ``services`` for the period ``[start, end]`` of a combined dataset.

    The baseline is every row before ``start`` (from ``baseline_start`` on, if given). Rows
    without text, after ``end`` or of other services are ignored; a frame without a ``message``
    column gives every service empty evidence. Naive times are UTC.
    """
    start, end = _utc(start), _utc(end)
    first = None if baseline_start is None else _utc(baseline_start)
    empty = {str(s): ServiceEvidence() for s in dict.fromkeys(services)}
    if MESSAGE not in frame.columns:
        return LogEvidence(empty)
    times = frame[TIMESTAMP]
    keep = frame[MESSAGE].notna() & frame[SERVICE].isin(list(empty)) & (times <= end)
    if first is not None:
        keep &= times >= first
    rows = frame.loc[keep, [TIMESTAMP, SERVICE, SEVERITY, MESSAGE]]
    before = rows.loc[rows[TIMESTAMP] < start, TIMESTAMP]
    baseline_from = first if first is not None else (before.min() if len(before) else start)
    stamps = np.sort(pd.DatetimeIndex(rows[TIMESTAMP]).as_unit("ns").asi8)
    cap = _gap_cap(stamps)
    ratio = max(_collected(stamps, start, end, cap), _MIN_PERIOD) / max(
        _collected(stamps, baseline_from, start, cap), _MIN_PERIOD
    )
    found = {
        str(service): _service_evidence(group, start, ratio if len(before) else 0.0)
        for service, group in rows.groupby(SERVICE, sort=False)
    }
    return LogEvidence({name: found.get(name, ev) for name, ev in empty.items()})


def _gap_cap(stamps: np.ndarray) -> int | None:
    """The longest stretch without any line that still counts as collected time, in ns.

    Rates must be per collected time, not wall time: where the log pipeline was down, or a
    recording keeps logs only around incidents (Nezha keeps a few minutes per injected fault),
    the baseline's wall time overstates how much was seen, every service's ordinary warnings
    look like a rise, and the ranking promotes whoever always complains. Where the service set
    logs densely (``stamps``, sorted ns of every line, have a typical gap under a tenth of
    ``_COLLECTION_GAP``), a longer stretch counts only up to ``_COLLECTION_GAP``. Sparser logs
    cannot tell a collection gap from a quiet hour, so their wall time counts (``None``).
    """
    gaps = np.diff(stamps)
    dense = len(gaps) > 0 and _DENSE_GAPS * float(np.median(gaps)) <= _COLLECTION_GAP.value
    return _COLLECTION_GAP.value if dense else None


def _collected(
    stamps: np.ndarray, start: pd.Timestamp, end: pd.Timestamp, cap: int | None
) -> pd.Timedelta:
    """How long logs were being collected in ``[start, end]``: the gaps between consecutive
    lines of ``stamps`` (and the bounds), each counted up to ``cap`` (see :func:`_gap_cap`)."""
    inside = stamps[(stamps >= start.value) & (stamps <= end.value)]
    spans = np.diff(np.concatenate([[start.value], inside, [end.value]]))
    if cap is not None:
        spans = np.minimum(spans, cap)
    return pd.Timedelta(int(spans.sum()))


def _service_evidence(rows: pd.DataFrame, start: pd.Timestamp, ratio: float) -> ServiceEvidence:
    period = (rows[TIMESTAMP] >= start).to_numpy()
    sides = _Sides(~period, period, (rows[SEVERITY].to_numpy() >= 1), ratio)
    messages = rows[MESSAGE].astype(str).map(message_text)
    mined = mine_templates(first_lines(messages).tolist())
    templates, exceptions = _templates(mined, sides), _exceptions(messages, sides)
    missing, missing_lines = _missing(mined, sides)
    excess = sum(max(t.period_problems - ratio * t.baseline_problems, 0.0) for t in templates)
    excess += sum(e.period_count for e in exceptions if e.new)
    return ServiceEvidence(
        baseline_events=int(sides.baseline.sum()),
        period_events=int(sides.period.sum()),
        templates=templates,
        exceptions=exceptions,
        problem_excess=round(float(excess), 3),
        missing_templates=missing,
        missing_lines=round(missing_lines, 3),
    )


def _templates(mined: MinedTemplates, sides: _Sides) -> list[TemplateEvidence]:
    """Templates of the messages' first lines that stand out; examples are masked lines."""
    table = _standouts(mined.template_ids, np.asarray(mined.masked, dtype=object), sides)
    return [
        TemplateEvidence(
            template=mined.templates[int(row["key"])],
            baseline_count=int(row["baseline"]),
            period_count=int(row["period"]),
            baseline_problems=int(row["baseline_problems"]),
            period_problems=int(row["period_problems"]),
            new=bool(row["new"]),
            example=str(row["example"]),
        )
        for row in table.to_dict("records")
    ]


def _missing(mined: MinedTemplates, sides: _Sides) -> tuple[list[MissingTemplate], float]:
    """Templates far rarer in the period than the service's own volume predicts, the largest
    shortfall first (at most ``MAX_ITEMS``), and the summed shortfall of all of them."""
    counts = _counts(mined.template_ids, sides)
    # Usual statements only: a warning or error that stops is a recovery, not a broken path, and
    # a burst of errors must not make the usual lines look rare.
    known = counts[
        (counts["baseline"] > 0) & (2 * counts["baseline_problems"] < counts["baseline"])
    ]
    volume = int(known["period"].sum())
    # Silent, or only new or problem templates: nothing is expected of any usual one.
    if volume == 0:
        return [], 0.0
    expected = volume * known["baseline"] / known["baseline"].sum()
    fell = poisson.cdf(known["period"], expected) < _RISE_P  # P(X <= period_count)
    shortfall = (expected - known["period"])[fell].sort_values(ascending=False, kind="stable")
    masked = np.asarray(mined.masked, dtype=object)
    baseline_rows = np.flatnonzero(sides.baseline)
    examples = pd.Series(masked[baseline_rows], index=mined.template_ids[baseline_rows])
    first = examples.groupby(level=0).first()
    items = [
        MissingTemplate(
            template=mined.templates[int(key)],
            baseline_count=int(known["baseline"][key]),
            period_count=int(known["period"][key]),
            expected_count=round(float(expected[key]), 3),
            example=str(first[key]),
        )
        for key in shortfall.index[:MAX_ITEMS]
    ]
    return items, float(shortfall.sum())


def _exceptions(messages: pd.Series, sides: _Sides) -> list[ExceptionEvidence]:
    """Trace fingerprints that stand out; every trace counts as a problem."""
    multi_line = np.flatnonzero(messages.str.contains("\n", regex=False).to_numpy())
    parsed = [(int(i), parse_trace(messages.iloc[i])) for i in multi_line]
    traces: list[tuple[int, Trace]] = [(i, t) for i, t in parsed if t is not None]
    if not traces:
        return []
    at = np.array([i for i, _ in traces])
    subset = _Sides(sides.baseline[at], sides.period[at], np.ones(len(at), bool), sides.ratio)
    fingerprints = np.array([t.fingerprint for _, t in traces], dtype=object)
    headers = np.array([t.header for _, t in traces], dtype=object)
    by_fingerprint = {t.fingerprint: t for _, t in reversed(traces)}  # the earliest of each
    return [
        ExceptionEvidence(
            fingerprint=str(row["key"]),
            type=by_fingerprint[row["key"]].type,
            frames=list(by_fingerprint[row["key"]].frames),
            baseline_count=int(row["baseline"]),
            period_count=int(row["period"]),
            new=bool(row["new"]),
            example=mask(str(row["example"])),
        )
        for row in _standouts(fingerprints, headers, subset).to_dict("records")
    ]


def _standouts(keys: np.ndarray, lines: np.ndarray, sides: _Sides) -> pd.DataFrame:
    """Counts per key (one row each) of the keys that are new or rising, most relevant first.

    Columns: ``key``, ``baseline``, ``period``, ``baseline_problems``, ``period_problems``,
    ``new``, ``example`` (the key's first line in the period, else in the baseline). At most
    ``MAX_ITEMS`` rows, ordered by excess problems over the expected count, then new, then count.
    """
    counts = _counts(keys, sides)
    expected = sides.ratio * counts["baseline_problems"]
    surprise = poisson.sf(counts["period_problems"] - 1, expected)  # P(X >= period_problems)
    counts["new"] = (counts["baseline"] == 0) & (counts["period"] > 0)
    rose = (counts["period_problems"] > 0) & (surprise < _RISE_P)
    counts["excess"] = counts["period_problems"] - expected
    ranked = counts[counts["new"] | rose].sort_values(
        ["excess", "new", "period"], ascending=False, kind="stable"
    )
    order = np.lexsort((np.arange(len(keys)), ~sides.period))  # period rows first, in time order
    examples = pd.Series(lines[order], index=keys[order]).groupby(level=0).first()
    top = ranked.head(MAX_ITEMS).reset_index()
    return top.assign(example=examples.reindex(top["key"]).to_numpy())


def _counts(keys: np.ndarray, sides: _Sides) -> pd.DataFrame:
    """Per key (the index): its lines in the ``baseline`` and in the ``period``, and the warning
    or error lines among them (``baseline_problems``, ``period_problems``)."""
    table = pd.DataFrame(
        {
            "key": keys,
            "baseline": sides.baseline,
            "period": sides.period,
            "baseline_problems": sides.baseline & sides.problem,
            "period_problems": sides.period & sides.problem,
        }
    )
    return table.groupby("key").sum().astype(np.int64)


def _utc(value: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
