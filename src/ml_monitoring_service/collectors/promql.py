"""PromQL text and semantics the Prometheus collector relies on, kept free of HTTP.

Two things live here because both must be exactly right and are easiest to test in isolation:

* :func:`render` fills a metric template's ``$service`` placeholder. Service names end up inside
  PromQL string literals, so a name like ``a"} or vector(1) #`` must stay a name and never become
  query syntax: it is escaped as a string-literal value (and, inside a regex matcher, as a
  regex literal too).
* :func:`plan_fast_path` and :func:`evaluate_at` reproduce Prometheus 2.x instant-query results
  from raw samples, for the templates where that is provably exact (see the rule in
  ``collectors/prometheus.py``), so event-mode sampling needs one raw fetch instead of one
  instant query per event time.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.errors import ConfigError, DataValidationError

_PLACEHOLDER = re.compile(r"\$service\b")
# String literals (three quote styles, as PromQL lexes them) and comments. A placeholder found
# outside every double-quoted literal would be substituted unquoted, i.e. as raw PromQL.
_LITERAL_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`|#[^\n]*')
_REGEX_OPERAND = re.compile(r"[=!]~\s*$")
# Go's regexp.QuoteMeta set: what Prometheus's RE2 treats as syntax.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")

# Aggregations whose instant value evaluate_at can reproduce (on some or all times).
_FAST_AGGREGATIONS = ("sum", "min", "max", "count", "avg")
_AGGREGATION_CALL = re.compile(
    r"(?P<op>" + "|".join(_FAST_AGGREGATIONS) + r")\s*\((?P<inner>.*)\)", re.I | re.S
)
_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCH_OPERATOR = re.compile(r"=~|!~|!=|=")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`')
# Identifiers PromQL's lexer reads as keywords or number literals, never as metric names.
_KEYWORDS = frozenset(
    "sum avg count min max group stddev stdvar topk bottomk count_values quantile "
    "and or unless atan2 by without on ignoring group_left group_right bool offset "
    "start end inf nan".split()
)
# Largest magnitude up to which every integer is a float64, so integer sums are exact in any order.
_EXACT_INTEGER_LIMIT = 2.0**53


def render(template: str, service: str) -> str:
    """``template`` with every ``$service`` replaced by ``service`` as a PromQL literal value.

    The placeholder must sit inside double-quoted string literals (``service="$service"``);
    anywhere else the name would be spliced in as raw PromQL, so that raises
    :class:`ConfigError`. Backslashes and double quotes are escaped; after ``=~``/``!~`` the
    name is also regex-quoted so ``a.b`` cannot match ``axb``. Names with control characters
    (a newline would end the literal) or no characters at all (``service=""`` matches series
    *without* the label) are rejected.
    """
    _check_service_name(service)
    pieces: list[str] = []
    position = 0
    for token in _LITERAL_OR_COMMENT.finditer(template):
        _refuse_bare_placeholder(template, template[position : token.start()])
        text = token.group()
        if text.startswith('"'):
            value = service
            if _REGEX_OPERAND.search(template[: token.start()]):
                value = "".join("\\" + c if c in _REGEX_META else c for c in value)
            text = _substitute(text, value.replace("\\", "\\\\").replace('"', '\\"'))
        else:
            _refuse_bare_placeholder(template, text)
        pieces.append(template[position : token.start()] + text)
        position = token.end()
    _refuse_bare_placeholder(template, template[position:])
    return "".join(pieces) + template[position:]


def _substitute(literal: str, escaped: str) -> str:
    return _PLACEHOLDER.sub(lambda _: escaped, literal)


def _check_service_name(service: str) -> None:
    if not service:
        raise ConfigError("service name is empty; it would match series without the label")
    controls = sorted({c for c in service if unicodedata.category(c) in ("Cc", "Cs")})
    if controls:
        raise ConfigError(
            f"service name {service!r} contains control characters {controls}; "
            "it cannot be used in a PromQL query"
        )


def _refuse_bare_placeholder(template: str, text: str) -> None:
    if _PLACEHOLDER.search(text):
        raise ConfigError(
            f"metric template {template!r}: $service must appear only inside double-quoted "
            'label values (e.g. service="$service")'
        )


@dataclass(frozen=True)
class FastPlan:
    """A template Prometheus evaluates as ``aggregation(selector)`` or a bare ``selector``."""

    selector: str
    aggregation: str | None


def plan_fast_path(query: str) -> FastPlan | None:
    """The selector and aggregation of ``query`` if it has a supported shape, else ``None``.

    Supported: a plain vector selector (``name``, ``name{matchers}``, ``{matchers}``) with no
    ``offset``, ``@`` or range, optionally wrapped in ``sum``/``min``/``max``/``count``/``avg``
    without ``by``/``without``. Anything else, or anything not recognised, returns ``None``,
    which is always safe: the caller then asks Prometheus itself.
    """
    text = query.strip()
    aggregation = None
    call = _AGGREGATION_CALL.fullmatch(text)
    if call is not None:
        aggregation = call.group("op").lower()
        text = call.group("inner").strip()
    return FastPlan(text, aggregation) if _is_plain_selector(text) else None


def _is_plain_selector(text: str) -> bool:
    position = 0
    name = _METRIC_NAME.match(text)
    if name is not None:
        if name.group().lower() in _KEYWORDS:
            return False
        position = _skip_space(text, name.end())
    if position < len(text) and text[position] == "{":
        position = _matchers_end(text, position + 1)
    elif name is None:
        return False
    return position == len(text)


def _matchers_end(text: str, position: int) -> int:
    """Index just past the ``}`` closing the matcher list that starts at ``position``, or -1."""
    position = _skip_space(text, position)
    while position < len(text) and text[position] != "}":
        for pattern in (_LABEL_NAME, _MATCH_OPERATOR, _STRING):
            token = pattern.match(text, position)
            if token is None:
                return -1
            position = _skip_space(text, token.end())
        if position < len(text) and text[position] == ",":
            position = _skip_space(text, position + 1)
        elif position < len(text) and text[position] != "}":
            return -1
    return position + 1 if position < len(text) else -1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


@dataclass(frozen=True)
class Series:
    """One time series as Prometheus returned it: labels and samples sorted by time."""

    labels: Mapping[str, str]
    timestamps_ms: np.ndarray  # int64, strictly increasing
    values: np.ndarray  # float64, same length


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="1", b="2"}``: how Prometheus prints a label set, for error messages."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def multiple_series_error(query: str, series: Sequence[Series], at_ms: int) -> DataValidationError:
    """The error for a query that yields several series at one time where one was expected."""
    shown = [format_labels(s.labels) for s in series[:5]]
    more = f" and {len(series) - 5} more" if len(series) > 5 else ""
    return DataValidationError(
        f"prometheus: query {query!r} returned {len(series)} series at {iso_ms(at_ms)} where one "
        f"was expected: {', '.join(shown)}{more}; aggregate them in the template (e.g. "
        "sum(...)) or narrow the selector"
    )


def iso_ms(epoch_ms: int) -> str:
    """RFC 3339 with milliseconds, Prometheus's time resolution (also what the API is sent)."""
    return str(pd.Timestamp(epoch_ms, unit="ms", tz="UTC").isoformat(timespec="milliseconds"))


def evaluate_at(
    query: str, plan: FastPlan, series: Sequence[Series], times_ms: np.ndarray, lookback_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Instant-query values of ``plan`` at ``times_ms`` from the raw samples in ``series``.

    Returns ``(values, unresolved)``: ``values`` is NaN where the query has no result;
    ``unresolved`` marks times whose value cannot be reproduced bit for bit (a ``sum`` of three
    or more non-integer values, an ``avg`` of several series), which the caller must ask
    Prometheus for. A bare selector that has more than one series at a time raises
    :class:`DataValidationError`, as the instant query would.
    """
    unresolved = np.zeros(len(times_ms), dtype=bool)
    if not series:
        return np.full(len(times_ms), np.nan), unresolved
    present, values = _as_of(series, times_ms, lookback_ms)
    counts = present.sum(axis=0)
    if plan.aggregation is None:
        if (counts > 1).any():
            at = int(np.argmax(counts > 1))
            overlapping = [s for s, here in zip(series, present[:, at], strict=True) if here]
            raise multiple_series_error(query, overlapping, int(times_ms[at]))
        result = values[np.argmax(present, axis=0), np.arange(len(times_ms))]
    elif plan.aggregation == "count":
        result = counts.astype(np.float64)
    elif plan.aggregation in ("max", "min"):
        result = _nan_skipping_extreme(plan.aggregation, present, values)
    else:
        result, unresolved = _sum_or_avg(plan.aggregation, present, values, counts)
    return np.where(counts > 0, result, np.nan), unresolved & (counts > 1)


def _as_of(
    series: Sequence[Series], times_ms: np.ndarray, lookback_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per series and time: is there a sample in [t - lookback, t], and the latest one's value.

    Prometheus 2.x's lookback is closed on the left: a sample exactly ``lookback`` old still
    counts (Prometheus 3 made it left-open). NaN-valued samples count as present.
    """
    present = np.zeros((len(series), len(times_ms)), dtype=bool)
    values = np.full((len(series), len(times_ms)), np.nan)
    for row, one in enumerate(series):
        if len(one.timestamps_ms) == 0:
            continue
        latest = np.searchsorted(one.timestamps_ms, times_ms, side="right") - 1
        clipped = np.clip(latest, 0, None)
        found = (latest >= 0) & (one.timestamps_ms[clipped] >= times_ms - lookback_ms)
        present[row] = found
        values[row] = np.where(found, one.values[clipped], np.nan)
    return present, values


def _nan_skipping_extreme(op: str, present: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``max``/``min`` as Prometheus computes them: NaN loses to any number, all-NaN gives NaN.

    Its loop replaces the running value when the new one is larger (smaller) or the running one
    is NaN, so the result does not depend on series order (up to the sign of a zero).
    """
    reduce = np.fmax if op == "max" else np.fmin
    return np.asarray(reduce.reduce(np.where(present, values, np.nan), axis=0))


def _sum_or_avg(
    op: str, present: np.ndarray, values: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``sum``/``avg`` where exact; ``unresolved`` where Prometheus's rounding could differ.

    One series: both equal its value. Prometheus adds series in its own order (and averages
    incrementally), which rounding makes matter from three terms on; two terms give the same
    sum either way round. Sums of integers whose magnitudes add up to at most 2**53 are exact in
    any order. Everything else (and any ``avg`` of several series) is left to Prometheus.
    """
    masked = np.where(present, values, 0.0)
    total = masked.sum(axis=0)
    if op == "avg":
        return total, counts > 1
    integral = (~present | (np.isfinite(values) & (values == np.round(values)))).all(axis=0)
    small = np.abs(masked).sum(axis=0) <= _EXACT_INTEGER_LIMIT
    return total, (counts > 2) & ~(integral & small)
