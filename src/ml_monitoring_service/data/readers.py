"""Read and write the combined dataset from files (recordings, exports, round-trips).

File formats differ only in how rows are stored; everything about what a valid row is lives in
``schema.validate_combined``, which every read ends with, so a recording replayed from disk obeys
exactly the same contract as live or demo data.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    TIMESTAMP,
    TRACE_ID,
    to_utc,
    validate_combined,
)
from ml_monitoring_service.errors import DataValidationError

# The reference recording stores a microsecond-precise copy of each event time next to a
# millisecond-rounded one; ordering events within a burst needs the precise one.
PRECISE_TIMESTAMP = "timestamp_nanoseconds"
# The reference recording (and Splunk's field) spells the trace id ``traceID``.
_TRACE_ALIASES = ("traceID",)

_FORMATS = {
    ".json": "json",
    ".json.gz": "json",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
}


def _format_of(path: Path) -> str:
    name = path.name.lower()
    # Longest suffix first so ".csv.gz" is not mistaken for an unknown ".gz".
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return _FORMATS[suffix]
    raise DataValidationError(
        f"cannot tell the format of {str(path)!r} from its suffix "
        f"(supported: {', '.join(sorted(_FORMATS))})"
    )


def _read_json(path: Path, lines: bool = False) -> pd.DataFrame:
    # dtype off: pandas would otherwise guess types per column (e.g. turn service
    # names that look like numbers into ints); the schema does the typing instead. precise_float
    # because the default parser is off in the last digits.
    return pd.read_json(
        path,
        orient="records",
        lines=lines,
        dtype=False,
        precise_float=True,
    )


def _read_jsonl(path: Path) -> pd.DataFrame:
    return _read_json(path, lines=True)


def _read_csv(path: Path) -> pd.DataFrame:
    # Service names and log lines stay text even when they look like numbers ("404", "007").
    return pd.read_csv(path, dtype={SERVICE: str, MESSAGE: str})


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    "json": _read_json,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "parquet": pd.read_parquet,
}


def _prefer_precise_timestamp(frame: pd.DataFrame) -> pd.DataFrame:
    """Use ``timestamp_nanoseconds`` where present, falling back to ``timestamp`` per row."""
    if PRECISE_TIMESTAMP not in frame.columns:
        return frame
    precise = to_utc(frame[PRECISE_TIMESTAMP])
    if TIMESTAMP in frame.columns:
        precise = precise.fillna(to_utc(frame[TIMESTAMP]))
    return frame.assign(**{TIMESTAMP: precise})


def _canonical_trace_id(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename a ``traceID`` column to ``trace_id`` unless the file has both."""
    if TRACE_ID in frame.columns:
        return frame
    alias = next((name for name in _TRACE_ALIASES if name in frame.columns), None)
    return frame if alias is None else frame.rename(columns={alias: TRACE_ID})


def read_combined(
    path: str | Path, metrics: Sequence[str], services: Sequence[str] | None = None
) -> pd.DataFrame:
    """Load a combined dataset file and return it validated against the canonical contract.

    The format follows the suffix (``.json`` array of records, ``.jsonl``, ``.csv``, ``.parquet``,
    optionally ``.gz`` for the text formats). Columns beyond the contract (derived hour/minute
    fields, numeric trace ids) are dropped by validation; ``message`` (log text) and ``trace_id``
    (or ``traceID``) are kept.
    """
    path = Path(path)
    kind = _format_of(path)
    if not path.is_file():
        raise DataValidationError(f"combined dataset file not found: {str(path)!r}")
    try:
        frame = _READERS[kind](path)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"cannot read {str(path)!r} as {kind}: {exc}") from exc
    if len(frame) == 0:
        raise DataValidationError(f"combined dataset file {str(path)!r} holds no rows")
    try:
        frame = _canonical_trace_id(_prefer_precise_timestamp(frame))
        return validate_combined(frame, services, metrics)
    except DataValidationError as exc:
        raise DataValidationError(f"{str(path)!r}: {exc}") from exc


def numeric_columns(path: str | Path) -> tuple[str, ...]:
    """Numeric columns of a combined dataset file other than the reserved ones: its metrics.

    Lets tools run on "any file the file source reads" without a configured metric list.
    """
    path = Path(path)
    frame = _READERS[_format_of(path)](path)
    reserved = {TIMESTAMP, SERVICE, SEVERITY, MESSAGE, TRACE_ID, PRECISE_TIMESTAMP, *_TRACE_ALIASES}
    return tuple(
        column
        for column in frame.columns
        if column not in reserved and pd.api.types.is_numeric_dtype(frame[column])
    )


def write_combined(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` so that :func:`read_combined` gives the same frame back.

    Timestamps are written as ISO strings with their offset in the text formats, because JSON and
    CSV have no datetime type and a bare epoch number would lose the unit.
    """
    path = Path(path)
    kind = _format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        df.to_parquet(path, index=False)
        return path
    text = df.copy()
    if TIMESTAMP in text.columns and isinstance(text[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        text[TIMESTAMP] = text[TIMESTAMP].astype(str)
    if kind == "csv":
        # 17 significant digits are always enough to read back the identical float64.
        text.to_csv(path, index=False, float_format="%.17g")
        return path
    # The json module writes floats with repr (exact round-trip); pandas' writer caps precision
    # at 15 digits. NaN becomes null, which the reader maps back to NaN.
    records = text.astype(object).where(text.notna(), None).to_dict(orient="records")
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        if kind == "jsonl":
            handle.writelines(json.dumps(record) + "\n" for record in records)
        else:
            json.dump(records, handle)
    return path
