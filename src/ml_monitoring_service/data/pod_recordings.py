"""Read recordings kept as directories of per-pod metric CSVs and log CSVs (the Nezha layout).

One recording directory (e.g. ``rca_data/<day>/`` of the Nezha data set) holds::

    metric/<pod>_metric.csv[.gz]  one row per sample: Time, TimeStamp, PodName, metric columns
    metric/<other>.csv[.gz]       not pods (front-end SLI, call graph, per-edge latencies)
    metric/source_50.csv[.gz]     per call edge ``<caller>_<callee>``: median latency the caller saw
    metric/destination_50.csv[.gz] the same edges as the callee's server measured them
    log/<HH_MM>_log.csv[.gz]      Timestamp, TimeUnixNano, Node, PodName, Container, TraceID,
                                  SpanID, Log (the container's JSON log line, level inside)
    <day>-fault_list.json         injected faults, grouped by hour

Decisions forced by the data, each checked on the Nezha days:

* sample times come from ``Time`` (``2022-08-22 03:51:19.607158889 +0000 UTC m=+0.11``), not from
  ``TimeStamp``: the latter is the same instant truncated to seconds in most files, but in at least
  one (adservice, 2022-08-22) it is off by 2·10⁸ s, so it cannot be trusted;
* a service is a pod's deployment (``frontend-579b9bff58-t2dbm`` → ``frontend``): pods are
  replaced across days and restarts, deployments are what a service set names;
* a log line's time comes from ``Timestamp`` (nanosecond ISO text), not ``TimeUnixNano``: the
  latter is a negative sentinel on some Train Ticket error lines and a minute off on another;
* a log line's level is read from the message (``"severity": "INFO"`` in JSON logs, or the
  level word after the time in plain ones such as ``16:42:22.382 INFO  t.s.Travel...``); lines
  without a level keep an unknown (``NaN``) severity but still count as events;
* the edge files give one derived per-service metric, ``INBOUND_NETWORK_DELAY``: for each
  callee, the median over its callers of the gap between the latency the caller saw and the
  latency the callee's server measured for the same edge. That gap is time spent on the wire
  (and in proxies), so it rises for the service whose network is degraded and for nobody else:
  on 2022-08-22 a delay injected into cartservice took both edges into it from ~5 ms to ~230 ms
  at the caller while its server still measured 3 ms, whereas the callers' own client latency
  (the pod metric) rose just as much and blamed them. A delayed pod delays every caller, so the
  median loses nothing and ignores one caller's noisy low-traffic edge (with the largest gap
  instead, currencyservice's normal 99th percentile was 2-3 times further out). A service mesh
  exports the same two views (Istio's request duration with ``reporter="source"`` and
  ``"destination"``);
* a fault's time is its ``inject_time`` read as UTC: it matches the metric and log clocks (the log
  file names, the first erroring minute), while ``inject_timestamp`` is 8 hours early or repeated
  for some Train Ticket faults.

Every read ends with ``schema.validate_combined``, like every other source.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    SEVERITY_NAMES,
    TIMESTAMP,
    TRACE_ID,
    to_utc,
    validate_combined,
)
from ml_monitoring_service.errors import DataValidationError

logger = logging.getLogger(__name__)

METRIC_DIR = "metric"
LOG_DIR = "log"
_POD_METRIC_SUFFIXES = ("_metric.csv", "_metric.csv.gz")
_CSV_SUFFIXES = (".csv", ".csv.gz")
_SAMPLE_TIME = "Time"
_POD = "PodName"
_LOG_TIME = "Timestamp"
_LOG_TEXT = "Log"
_TRACE = "TraceID"
_CALL_GRAPH = "dependency"
_EDGE_TIME = "time"
# (caller-side, callee-side) per-edge latency files, median per minute.
_EDGE_LATENCY_FILES = ("source_50", "destination_50")
_CALLEE_SIDE = " (callee side)"  # column suffix of the callee-side table once aligned
_EDGE_TOLERANCE = pd.Timedelta(seconds=30)  # samples of one minute are a second or two apart
# Source "column" naming the derived metric: name it in a service set's ``metrics`` mapping.
INBOUND_NETWORK_DELAY = "InboundNetworkDelay(s)"

# A Deployment's pod is "<deployment>-<ReplicaSet hash>-<5-character suffix>".
_POD_SUFFIX = r"-[a-z0-9]{5,10}-[a-z0-9]{5}$"
# Level words the schema knows (longest first: "warning" before "warn"); others stay unknown.
_LEVEL = "(" + "|".join(sorted(SEVERITY_NAMES, key=len, reverse=True)) + ")"
# JSON logs: "severity": "INFO" / "level":"error", quotes escaped once inside the Log column.
_STRUCTURED_LEVEL = rf'(?i)"(?:severity|level)\\*"\s*:\s*\\*"{_LEVEL}\\*"'
# Plain logs: the level is the first word of the line, optionally after a time of day.
_PLAIN_LEVEL = rf'(?i)^(?:\{{"log"\s*:\s*")?(?:[\d:.,\-T]+\s+)?{_LEVEL}\b'


@dataclass(frozen=True)
class InjectedFault:
    """One injected fault: when (UTC), into which service and pod, and of which kind."""

    time: pd.Timestamp
    service: str
    pod: str
    kind: str


def deployment_names(pods: pd.Series) -> pd.Series:
    """Pod names → deployment names; names that do not look like a Deployment's pod are kept."""
    return pods.astype(str).str.replace(_POD_SUFFIX, "", regex=True)


def recording_services(directory: Path) -> tuple[str, ...]:
    """Deployments that have a per-pod metric file in ``directory``, sorted."""
    return tuple(sorted(_pod_metric_files(directory)))


def read_pod_recording(
    directory: Path,
    services: Sequence[str],
    metrics: Mapping[str, str],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    *,
    logs: bool = True,
) -> pd.DataFrame:
    """The canonical combined dataset of ``services`` in ``directory``, restricted to [start, end).

    ``metrics`` maps each configured metric name to its source column (``cpu: CpuUsageRate(%)``).
    Metric rows are the samples (severity ``NaN``); with ``logs``, every log line is a row too
    (its metrics ``NaN``, its severity read from the message, its text in ``message``,
    nanosecond time kept). Pass
    ``logs=False`` where log coverage is not uniform over time (Nezha keeps logs only for minutes
    around each injection), since the log rows would then betray where the faults are.
    """
    directory = Path(directory)
    files = _pod_metric_files(directory)
    window = (_as_utc(start), _as_utc(end))
    recorded = {name: column for name, column in metrics.items() if column != INBOUND_NETWORK_DELAY}
    frames = [_read_metrics(path, recorded) for s in services for path in files.get(s, [])]
    derived = [name for name in metrics if name not in recorded]
    if derived and frames:
        frames = _with_network_delay(frames, inbound_network_delay(directory, services), derived)
    if logs:
        frames.extend(_read_logs(path, services) for path in _log_files(directory))
    frame = _in_range(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), window)
    _require_services(frame, services, directory, tuple(files), window)
    try:
        return validate_combined(frame, services, list(metrics))
    except DataValidationError as exc:
        raise DataValidationError(f"{str(directory)!r}: {exc}") from exc


def read_fault_list(directory: Path) -> tuple[InjectedFault, ...]:
    """Faults from ``directory``'s ``*fault_list.json``, sorted by time (see the module docstring).

    The file maps an hour to a list of ``{inject_time, inject_timestamp, inject_pod, inject_type}``
    (a plain list is accepted too).
    """
    path = _single(sorted(Path(directory).glob("*fault_list.json")), directory, "*fault_list.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataValidationError(f"{str(path)!r} is not valid JSON: {exc}") from None
    records = [r for group in raw.values() for r in group] if isinstance(raw, dict) else raw
    required = ["inject_time", "inject_pod", "inject_type"]
    table = pd.DataFrame(records, columns=[*required, "inject_timestamp"])
    if table[required].isna().any().any():
        raise DataValidationError(
            f"{str(path)!r}: every fault needs inject_time, inject_pod and inject_type"
        )
    times = to_utc(table["inject_time"])
    _warn_on_clock_disagreement(path, times, table["inject_timestamp"])
    services = deployment_names(table["inject_pod"])
    faults = [
        InjectedFault(time, service, str(pod), str(kind))
        for time, service, pod, kind in zip(
            times, services, table["inject_pod"], table["inject_type"], strict=True
        )
    ]
    return tuple(sorted(faults, key=lambda f: f.time))


def read_call_graph(
    directory: Path, services: Sequence[str] | None = None
) -> tuple[tuple[str, str], ...]:
    """(caller, callee) service pairs from ``metric/dependency.csv[.gz]``; empty without one.

    The file lists ``Source,Target,Weight`` edges, mixing service→service calls with
    service→node-IP placements and the load generator; only edges between two of ``services``
    (default: the recording's deployments) are calls the service set can use.
    """
    path = _metric_dir_file(directory, _CALL_GRAPH)
    if path is None:
        return ()
    edges = pd.read_csv(path, dtype=str)
    if not {"Source", "Target"} <= set(edges.columns):
        raise DataValidationError(
            f"{str(path)!r} has no Source/Target columns (columns: {list(edges.columns)})"
        )
    known = set(recording_services(directory) if services is None else services)
    calls = edges[
        edges["Source"].isin(known)
        & edges["Target"].isin(known)
        & (edges["Source"] != edges["Target"])
    ]
    pairs = calls[["Source", "Target"]].drop_duplicates().itertuples(index=False)
    return tuple(sorted((str(caller), str(callee)) for caller, callee in pairs))


def has_edge_latencies(directory: Path) -> bool:
    """Whether ``directory`` has per-edge latencies, so ``INBOUND_NETWORK_DELAY`` can be read."""
    return all(_metric_dir_file(directory, stem) is not None for stem in _EDGE_LATENCY_FILES)


def inbound_network_delay(directory: Path, services: Sequence[str]) -> pd.DataFrame:
    """Per service and minute, the median over its callers of caller-seen minus callee-measured
    edge latency (s).

    Returns a frame indexed by sample time with one column per service. Edges between services
    not in ``services`` are ignored; a service nobody calls gets 0 (no hop to measure); a minute
    without calls keeps the last measured gap.
    """
    paths = [_metric_dir_file(directory, stem) for stem in _EDGE_LATENCY_FILES]
    if any(path is None for path in paths):
        names = " and ".join(f"{stem}.csv[.gz]" for stem in _EDGE_LATENCY_FILES)
        raise DataValidationError(
            f"{str(directory)!r} has no {names} under {METRIC_DIR}/, so {INBOUND_NETWORK_DELAY!r} "
            "cannot be derived; remove it from the metrics or record per-edge latencies"
        )
    caller_side, callee_side = (_read_edge_table(path) for path in paths if path is not None)
    aligned = pd.merge_asof(
        caller_side.reset_index(),
        callee_side.reset_index(),
        on=TIMESTAMP,
        direction="nearest",
        tolerance=_EDGE_TOLERANCE,
        suffixes=("", _CALLEE_SIDE),
    ).set_index(TIMESTAMP)
    delay = pd.DataFrame(0.0, index=aligned.index, columns=list(services))
    for callee in services:
        inbound = [f"{caller}_{callee}" for caller in services if caller != callee]
        gaps = [
            aligned[edge] - aligned[edge + _CALLEE_SIDE]
            for edge in inbound
            if edge in aligned.columns and edge + _CALLEE_SIDE in aligned.columns
        ]
        if gaps:
            delay[callee] = pd.concat(gaps, axis=1).median(axis=1).ffill().fillna(0.0)
    return delay


# ------------------------------------------------------------------------------------- files


def _pod_metric_files(directory: Path) -> dict[str, list[Path]]:
    """Deployment → its pods' metric files (several when pods were replaced)."""
    folder = Path(directory) / METRIC_DIR
    if not folder.is_dir():
        raise DataValidationError(f"{str(directory)!r} has no {METRIC_DIR}/ directory")
    paths = sorted(p for p in folder.iterdir() if p.name.endswith(_POD_METRIC_SUFFIXES))
    if not paths:
        raise DataValidationError(
            f"{str(folder)!r} holds no per-pod metric files (*_metric.csv or *_metric.csv.gz)"
        )
    pods = pd.Series([p.name.split("_metric.csv")[0] for p in paths])
    files: dict[str, list[Path]] = {}
    for service, path in zip(deployment_names(pods), paths, strict=True):
        files.setdefault(service, []).append(path)
    return files


def _metric_dir_file(directory: Path, stem: str) -> Path | None:
    """``metric/<stem>.csv`` or ``.csv.gz`` in ``directory``, if there is one."""
    candidates = [Path(directory) / METRIC_DIR / f"{stem}{suffix}" for suffix in _CSV_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


def _log_files(directory: Path) -> list[Path]:
    folder = Path(directory) / LOG_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(_CSV_SUFFIXES))


def _single(paths: list[Path], directory: Path, pattern: str) -> Path:
    if len(paths) != 1:
        raise DataValidationError(
            f"expected one {pattern} in {str(directory)!r}, found {[p.name for p in paths]}"
        )
    return paths[0]


# ------------------------------------------------------------------------------------- rows


def _read_metrics(path: Path, metrics: Mapping[str, str]) -> pd.DataFrame:
    """One pod's samples: timestamp, service, the configured metrics under their own names."""
    raw = _read_csv(path)
    wanted = [_SAMPLE_TIME, _POD, *metrics.values()]
    missing = [column for column in wanted if column not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{str(path)!r} has no column(s) {missing}; available columns: {list(raw.columns)}"
        )
    frame = pd.DataFrame(
        {TIMESTAMP: _sample_times(raw[_SAMPLE_TIME]), SERVICE: deployment_names(raw[_POD])}
    )
    frame[list(metrics)] = raw[list(metrics.values())].to_numpy()
    frame[SEVERITY] = np.nan
    return frame


def _read_edge_table(path: Path) -> pd.DataFrame:
    """An edge-latency file: sample time (UTC) → one column per ``<caller>_<callee>`` edge."""
    raw = _read_csv(path)
    if _EDGE_TIME not in raw.columns:
        raise DataValidationError(
            f"{str(path)!r} has no {_EDGE_TIME!r} column (columns: {list(raw.columns)})"
        )
    edges = raw.drop(columns=[c for c in (_EDGE_TIME, "timestamp") if c in raw.columns])
    table = edges.apply(pd.to_numeric, errors="coerce").astype(float)
    table.index = pd.Index(_sample_times(raw[_EDGE_TIME]), name=TIMESTAMP)
    return table.sort_index()


def _with_network_delay(
    frames: list[pd.DataFrame], delay: pd.DataFrame, names: Sequence[str]
) -> list[pd.DataFrame]:
    """Each pod's samples with the derived delay of its service at the nearest edge sample."""
    series = delay.sort_index()
    out = []
    for frame in frames:
        service = str(frame[SERVICE].iloc[0]) if len(frame) else ""
        column = series[service] if service in series.columns else pd.Series(dtype=float)
        nearest = pd.merge_asof(
            frame[[TIMESTAMP]].reset_index(),
            column.rename("delay").rename_axis(TIMESTAMP).reset_index(),
            on=TIMESTAMP,
            direction="nearest",
            tolerance=_EDGE_TOLERANCE,
        ).set_index("index")["delay"]
        out.append(
            frame.assign(**{name: nearest.reindex(frame.index).to_numpy() for name in names})
        )
    return out


def _sample_times(column: pd.Series) -> pd.Series:
    """``2022-08-22 03:51:19.607158889 +0000 UTC m=+0.113112869`` → UTC: the Go monotonic-clock
    reading and the zone name are dropped, the offset is kept."""
    return to_utc(column.astype(str).str.replace(r"\s+UTC\b.*$", "", regex=True))


def _read_logs(path: Path, services: Sequence[str]) -> pd.DataFrame:
    """One log file's lines of ``services``: timestamp, service, severity, the line's text and its
    trace id.

    The text is kept as recorded (the container runtime's JSON envelope included), so what log
    evidence shows is what an operator would find in the file.
    """
    raw = _read_csv(path, usecols=[_LOG_TIME, _POD, _TRACE, _LOG_TEXT])
    service = deployment_names(raw[_POD])
    keep = service.isin(services).to_numpy()
    text = raw.loc[keep, _LOG_TEXT].astype(str)
    level = text.str.extract(_STRUCTURED_LEVEL, expand=False)
    level = level.fillna(text.str.extract(_PLAIN_LEVEL, expand=False))
    return pd.DataFrame(
        {
            TIMESTAMP: to_utc(raw.loc[keep, _LOG_TIME]),
            SERVICE: service[keep],
            SEVERITY: level.str.lower().map(SEVERITY_NAMES),
            MESSAGE: text,
            TRACE_ID: raw.loc[keep, _TRACE],
        }
    )


def _read_csv(path: Path, usecols: list[str] | None = None) -> pd.DataFrame:
    """``pd.read_csv`` that skips malformed lines (Nezha has spliced log lines) and says so."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            frame = pd.read_csv(path, usecols=usecols, on_bad_lines="warn")
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataValidationError(f"cannot read {str(path)!r}: {exc}") from exc
    skipped = sum(str(w.message).count("Skipping line") for w in caught)
    if skipped:
        logger.warning("%s: skipped %d malformed line(s)", path, skipped)
    return frame


# ---------------------------------------------------------------------------------- checks


def _warn_on_clock_disagreement(path: Path, times: pd.Series, epochs: pd.Series) -> None:
    """Say how many ``inject_timestamp`` values disagree with the ``inject_time`` that is used."""
    offsets = (to_utc(pd.to_numeric(epochs, errors="coerce")) - times).abs()
    off = offsets > pd.Timedelta(minutes=1)
    if off.any():
        logger.warning(
            "%s: inject_timestamp disagrees with inject_time for %d of %d faults (by up to %s); "
            "using inject_time, the clock of the metrics and logs",
            path,
            int(off.sum()),
            len(off),
            offsets.max(),
        )


def _as_utc(value: pd.Timestamp | None) -> pd.Timestamp | None:
    """Naive bounds are UTC, like every timestamp in the combined dataset."""
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _in_range(
    frame: pd.DataFrame, window: tuple[pd.Timestamp | None, pd.Timestamp | None]
) -> pd.DataFrame:
    start, end = window
    if frame.empty or (start is None and end is None):
        return frame
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= frame[TIMESTAMP] >= start
    if end is not None:
        keep &= frame[TIMESTAMP] < end
    return frame.loc[keep].reset_index(drop=True)


def _require_services(
    frame: pd.DataFrame,
    services: Sequence[str],
    directory: Path,
    found: tuple[str, ...],
    window: tuple[pd.Timestamp | None, pd.Timestamp | None],
) -> None:
    present = set(frame[SERVICE]) if not frame.empty else set()
    absent = [s for s in dict.fromkeys(services) if s not in present]
    if absent:
        start, end = window
        span = "" if start is None and end is None else f" in [{start}, {end})"
        raise DataValidationError(
            f"configured services have no data{span} in {str(directory)!r}: {absent} "
            f"(services with metric files: {sorted(found)})"
        )
