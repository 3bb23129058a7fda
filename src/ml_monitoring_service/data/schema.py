"""The canonical combined dataset: the one shape every source is turned into.

Sources disagree on almost everything (epoch integers vs ISO strings, naive vs offset-aware times,
``"NaN"`` spelled as text, services nobody configured), and every later stage assumes a single
convention. Checking that convention once, here, lets densification, scaling and the detectors
trust their input instead of each re-checking it differently. The contract itself is documented in
``ARCHITECTURE.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import pandas as pd

from ml_monitoring_service.errors import DataValidationError

logger = logging.getLogger(__name__)

TIMESTAMP = "timestamp"
SERVICE = "service"
SEVERITY = "severity_level"
# Optional: the log line's text (multi-line for stack traces). Only sources that know log text
# fill it; models never see it (densification ignores it), log evidence mining reads it.
MESSAGE = "message"
# Optional: the distributed-trace id of a log event. Requests that cross services log under one id,
# which is how explain/call_graph.py learns who calls whom when no call graph is configured.
TRACE_ID = "trace_id"

_RESERVED = (TIMESTAMP, SERVICE, SEVERITY, MESSAGE, TRACE_ID)
_UTC_DTYPE: Final = "datetime64[ns, UTC]"

# Text that means "no value" rather than "bad value": exporters write these for gaps.
_MISSING_TOKENS = frozenset({"", "nan", "null", "none", "na", "n/a"})

# Log level names seen in Splunk exports, mapped onto the numeric severity scale.
SEVERITY_NAMES = {
    "debug": 0.0,
    "info": 0.0,
    "notice": 0.0,
    "warn": 1.0,
    "warning": 1.0,
    "error": 2.0,
    "err": 2.0,
    "critical": 2.0,
    "fatal": 2.0,
}

# Upper bounds (exclusive) of |epoch| for each unit. Real timestamps between 1973 and 5138 fall in
# exactly one band, so the unit can be inferred instead of configured per source.
_EpochUnit = Literal["s", "ms", "us", "ns"]
_EPOCH_UNIT_BANDS: tuple[tuple[float, _EpochUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def to_utc(series: pd.Series) -> pd.Series:
    """Parse timestamps of any supported form to ``datetime64[ns, UTC]``.

    Naive values are taken to be UTC because that is what the collectors record; offset-aware
    values are converted. Numbers are epoch times whose unit (s, ms, us, ns) is inferred from
    their magnitude, so millisecond exports and nanosecond exports both work unconfigured. Nulls
    become ``NaT`` (the caller decides whether that is acceptable); anything else that cannot be
    parsed raises, because silently dropping rows would hide a broken export.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").astype(_UTC_DTYPE)
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.dt.tz_localize("UTC").astype(_UTC_DTYPE)
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataValidationError(f"column {series.name!r} holds booleans, not timestamps")
    if pd.api.types.is_numeric_dtype(series.dtype):
        return _from_epoch(series)
    return _from_objects(series)


def _from_epoch(series: pd.Series) -> pd.Series:
    """Epoch numbers to UTC, unit chosen by the median magnitude (robust to a few outliers)."""
    values = series.astype("float64")
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return pd.Series(pd.NaT, index=series.index, dtype=_UTC_DTYPE, name=series.name)
    magnitude = float(np.median(np.abs(finite)))
    unit: _EpochUnit = next((u for bound, u in _EPOCH_UNIT_BANDS if magnitude < bound), "ns")
    if pd.api.types.is_integer_dtype(series.dtype):
        # Integers keep full nanosecond precision; a float64 detour would round them.
        parsed = pd.to_datetime(series, unit=unit, utc=True)
    else:
        parsed = pd.to_datetime(values.where(np.isfinite(values)), unit=unit, utc=True)
    return parsed.astype(_UTC_DTYPE)


def _from_objects(series: pd.Series) -> pd.Series:
    """Mixed object columns: real numbers as epochs, everything else as date strings/objects."""
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return _from_epoch(pd.to_numeric(series))
    if kind in ("mixed", "mixed-integer"):
        # Rare (hand-edited JSON): only here is a per-value type check worth its cost.
        is_number = series.map(
            lambda v: (
                isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            )
        ).astype(bool)
    else:
        is_number = pd.Series(False, index=series.index)
    result = pd.Series(pd.NaT, index=series.index, dtype=_UTC_DTYPE, name=series.name)
    if is_number.any():
        result[is_number] = _from_epoch(series[is_number].astype("float64"))
    rest = series[~is_number]
    present = rest.notna() & ~rest.astype(str).str.strip().str.lower().isin(_MISSING_TOKENS)
    rest = rest[present]
    if rest.empty:
        return result
    parsed = pd.to_datetime(rest, utc=True, format="ISO8601", errors="coerce")
    retry = parsed.isna()
    if retry.any():
        # Non-ISO spellings ("30 Nov 2024 10:00") are rare, so the slow per-value parser only
        # sees the leftovers.
        parsed[retry] = pd.to_datetime(rest[retry], utc=True, format="mixed", errors="coerce")
    bad = rest[parsed.isna()]
    if not bad.empty:
        raise DataValidationError(
            f"column {series.name!r}: {len(bad)} of {len(series)} timestamps cannot be parsed "
            f"(e.g. {bad.iloc[0]!r} in row {bad.index[0]!r})"
        )
    result[rest.index] = parsed.astype(_UTC_DTYPE)
    return result


def _to_float(series: pd.Series, column: str) -> pd.Series:
    """Coerce a metric column to float64; text gaps become NaN, unreadable text raises."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.astype("float64")
    else:
        text = series.astype(str).str.strip()
        if column == SEVERITY:
            names = text.str.lower().map(SEVERITY_NAMES)
            text = text.where(names.isna(), names.astype(str))
        values = pd.to_numeric(text, errors="coerce").astype("float64")
        missing = series.isna() | text.str.lower().isin(_MISSING_TOKENS)
        bad = series[values.isna() & ~missing]
        if not bad.empty:
            raise DataValidationError(
                f"column {column!r}: {len(bad)} values are not numbers "
                f"(e.g. {bad.iloc[0]!r} in row {bad.index[0]!r})"
            )
    infinite = np.isinf(values.to_numpy())
    n_inf = int(infinite.sum())
    if n_inf:
        # Infinities come from division-by-zero in exporters; they carry no magnitude a scaler
        # could use, so they are treated as unobserved rather than failing the whole batch.
        logger.warning("column %r: replaced %d non-finite (±Inf) values with NaN", column, n_inf)
        values = values.mask(infinite)
    return values


def _to_text(series: pd.Series) -> pd.Series:
    """Log text as a ``str`` column; missing and empty text become ``NaN``.

    Empty text is treated as missing because CSV cannot tell the two apart, so a round trip
    through any file format gives the same column back.
    """
    text = series.astype("str")
    return text.where(text != "")


def _check_columns(df: pd.DataFrame, metrics: Sequence[str]) -> None:
    available = [str(c) for c in df.columns]
    for required in (TIMESTAMP, SERVICE):
        if required not in df.columns:
            raise DataValidationError(
                f"combined dataset has no {required!r} column (available columns: {available})"
            )
    reserved = [m for m in metrics if m in _RESERVED]
    if reserved:
        raise DataValidationError(
            f"metrics {reserved} clash with reserved columns {list(_RESERVED)}"
        )
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise DataValidationError(
            f"metric columns missing from the combined dataset: {missing} "
            f"(available columns: {available})"
        )


def _select_services(df: pd.DataFrame, services: Sequence[str] | None) -> pd.DataFrame:
    """Keep configured services only, and insist each of them actually reported."""
    if services is None:
        return df
    configured = list(dict.fromkeys(services))
    if not configured:
        raise DataValidationError("no services configured: 'services' is an empty sequence")
    present = df[SERVICE].unique().tolist()
    absent = [s for s in configured if s not in set(present)]
    if absent:
        raise DataValidationError(
            f"configured services have no rows: {absent} (services present: {sorted(present)})"
        )
    keep = df[SERVICE].isin(configured)
    if not keep.all():
        dropped = df.loc[~keep, SERVICE].value_counts().sort_index()
        logger.warning(
            "dropping %d rows of services that are not configured: %s",
            int(dropped.sum()),
            dict(dropped.items()),
        )
    return df[keep]


def validate_combined(
    df: pd.DataFrame, services: Sequence[str] | None, metrics: Sequence[str]
) -> pd.DataFrame:
    """Check ``df`` against the canonical contract and return a cleaned copy.

    The copy holds exactly ``timestamp, service, *metrics, severity_level``, plus ``message`` (log
    text) and ``trace_id`` (``NaN`` where absent) when the input has those columns.
    Source-specific extra columns are dropped so they cannot leak into features. The copy is
    sorted stably by time and has a fresh ``RangeIndex``. ``services=None`` keeps every service
    present; otherwise rows of other services are dropped with a warning and each configured
    service must have rows.
    """
    if df is None or len(df) == 0:
        raise DataValidationError("combined dataset is empty (0 rows)")
    metrics = list(dict.fromkeys(metrics))
    _check_columns(df, metrics)

    service = df[SERVICE]
    nameless = int(service.isna().sum())
    if nameless:
        raise DataValidationError(
            f"column {SERVICE!r}: {nameless} of {len(df)} rows have no service name"
        )
    out = pd.DataFrame(
        {TIMESTAMP: to_utc(df[TIMESTAMP]), SERVICE: service.astype(str)}, index=df.index
    )
    no_time = out[TIMESTAMP].isna()
    if no_time.any():
        raise DataValidationError(
            f"column {TIMESTAMP!r}: {int(no_time.sum())} of {len(df)} rows have no timestamp "
            f"(first at row {no_time.idxmax()!r})"
        )
    for metric in metrics:
        out[metric] = _to_float(df[metric], metric)
    out[SEVERITY] = _to_float(df[SEVERITY], SEVERITY) if SEVERITY in df.columns else np.nan
    for text_column in (MESSAGE, TRACE_ID):
        if text_column in df.columns:
            out[text_column] = _to_text(df[text_column])

    out = _select_services(out, services)
    out = out.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)
    return out
