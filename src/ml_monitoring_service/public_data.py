"""Public multivariate benchmarks in the SMD layout (SMD, ASD) as :class:`ServiceTensor` data.

Layout of a dataset directory (the OmniAnomaly / InterFusion convention)::

    train/<machine>.txt[.gz]                 comma-separated floats, one row per sample
    test/<machine>.txt[.gz]                  same columns, scored
    test_label/<machine>.txt[.gz]            0/1 per test row
    interpretation_label/<machine>.txt[.gz]  ``start-end:d1,d2,...`` (1-indexed metric dims)

The files carry no timestamps; the tensors get a synthetic regular UTC index at the dataset's
sampling interval, the test part continuing right after the training part. Two layouts:

* ``one-service``: one service (``machine``) with ``F`` features ``m1..mF``;
* ``per-metric``: ``F`` services ``m1..mF`` with one feature (``value``) each, so the transformer's
  cross-service attention relates the metrics to each other.

Interpretation segments are read as rows ``start..end`` inclusive and then restricted to the rows
labelled anomalous: SMD writes the end exclusively (``246-252`` labels rows 246–251), ASD
inclusively (``760-765`` labels rows 760–765); intersecting with the labels reads both correctly.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml_monitoring_service.errors import DataValidationError
from ml_monitoring_service.prepare.densify import ServiceTensor

SAMPLING_INTERVALS = {"smd": pd.Timedelta(minutes=1), "asd": pd.Timedelta(minutes=5)}
DEFAULT_START = pd.Timestamp("2020-01-01T00:00:00Z")
MODES = ("one-service", "per-metric")
ONE_SERVICE = "machine"
PER_METRIC_FEATURE = "value"


@dataclass(frozen=True)
class RootCauseSegment:
    """Rows ``start..end`` (inclusive, 0-based) and the 0-based metric columns that caused them."""

    start: int
    end: int
    dims: tuple[int, ...]


@dataclass(frozen=True)
class MachineData:
    """One machine (SMD) or server (ASD): train/test values, test labels, interpretation."""

    name: str
    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    segments: tuple[RootCauseSegment, ...]

    @property
    def n_metrics(self) -> int:
        """Number of metric columns F."""
        return int(self.train.shape[1])


def _find(directory: Path, machine: str) -> Path:
    for suffix in (".txt", ".txt.gz"):
        path = directory / f"{machine}{suffix}"
        if path.exists():
            return path
    raise DataValidationError(f"no {machine}.txt or {machine}.txt.gz in {directory}")


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def _read_matrix(path: Path) -> np.ndarray:
    values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if not np.all(np.isfinite(values)):
        raise DataValidationError(f"{path}: non-finite values")
    return values


def list_machines(root: Path) -> list[str]:
    """Machines with a training file, sorted by name."""
    train = root / "train"
    if not train.is_dir():
        raise DataValidationError(f"{root} has no train/ directory (expected the SMD layout)")
    names = {p.name.removesuffix(".gz").removesuffix(".txt") for p in train.iterdir()}
    return sorted(n for n in names if n and not n.startswith("."))


def parse_interpretation(text: str, labels: np.ndarray) -> tuple[RootCauseSegment, ...]:
    """``start-end:d1,d2`` lines → segments restricted to labelled rows, dims 0-based."""
    segments: list[RootCauseSegment] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            span, dims_text = line.split(":")
            start_text, end_text = span.split("-")
            start, end = int(start_text), min(int(end_text), len(labels) - 1)
            dims = tuple(sorted({int(d) - 1 for d in dims_text.split(",") if d.strip()}))
        except ValueError:
            raise DataValidationError(f"bad interpretation line {line!r}") from None
        labelled = np.flatnonzero(labels[start : end + 1]) + start
        if labelled.size:
            start, end = int(labelled[0]), int(labelled[-1])
        segments.append(RootCauseSegment(start, end, dims))
    return tuple(segments)


def load_machine(root: Path, machine: str) -> MachineData:
    """Read one machine's four files; checks that shapes agree."""
    train = _read_matrix(_find(root / "train", machine))
    test = _read_matrix(_find(root / "test", machine))
    labels = np.loadtxt(_find(root / "test_label", machine), dtype=np.float64, ndmin=1)
    labels = (labels > 0).astype(np.int8)
    if train.shape[1] != test.shape[1] or len(labels) != len(test):
        raise DataValidationError(
            f"{machine}: train {train.shape}, test {test.shape}, labels {labels.shape} disagree"
        )
    interpretation = root / "interpretation_label"
    segments: tuple[RootCauseSegment, ...] = ()
    if interpretation.is_dir():
        try:
            path = _find(interpretation, machine)
        except DataValidationError:
            path = None
        if path is not None:
            segments = parse_interpretation(_read_text(path), labels)
    return MachineData(machine, train, test, labels, segments)


def metric_names(n_metrics: int) -> tuple[str, ...]:
    """``m1..mF``."""
    return tuple(f"m{i + 1}" for i in range(n_metrics))


def to_service_tensor(
    values: np.ndarray, start: pd.Timestamp, interval: pd.Timedelta, mode: str
) -> ServiceTensor:
    """``[T, F]`` rows → a tensor on a regular UTC index (see the module docstring for modes)."""
    if mode not in MODES:
        raise DataValidationError(f"unknown mode {mode!r}; choose from {list(MODES)}")
    n_steps, n_metrics = values.shape
    timestamps = pd.date_range(start, periods=n_steps, freq=interval)
    names = metric_names(n_metrics)
    if mode == "one-service":
        tensor = values[:, None, :]
        services: tuple[str, ...] = (ONE_SERVICE,)
        features: tuple[str, ...] = names
    else:
        tensor = values[:, :, None]
        services, features = names, (PER_METRIC_FEATURE,)
    return ServiceTensor(
        values=np.ascontiguousarray(tensor, dtype=np.float64),
        observed=np.ones((n_steps, len(services)), dtype=bool),
        timestamps=pd.DatetimeIndex(timestamps),
        services=services,
        features=features,
    )


def machine_tensors(
    data: MachineData, interval: pd.Timedelta, mode: str, start: pd.Timestamp = DEFAULT_START
) -> tuple[ServiceTensor, ServiceTensor]:
    """Training and test tensors; the test index continues right after the training index."""
    train = to_service_tensor(data.train, start, interval, mode)
    test_start = start + interval * len(data.train)
    return train, to_service_tensor(data.test, test_start, interval, mode)


def point_scores(
    ends: pd.DatetimeIndex, scores: np.ndarray, timestamps: pd.DatetimeIndex
) -> np.ndarray:
    """Window scores → one score per time step of ``timestamps``.

    Each window's score goes to its end step; steps before the first window end get the first
    window's score, and any step no window ends on (stride > 1) keeps the previous end's score.
    ``scores`` may have trailing dimensions (``[N, S]``, ``[N, S, F]``).
    """
    positions = timestamps.get_indexer(ends)
    if np.any(positions < 0):
        raise DataValidationError("window end times are not on the scored time index")
    filled = np.full((len(timestamps),) + scores.shape[1:], np.nan)
    filled[positions] = scores
    frame = pd.DataFrame(filled.reshape(len(timestamps), -1)).ffill().bfill()
    return frame.to_numpy().reshape(filled.shape)


def root_cause_hit_rates(
    metric_point_scores: np.ndarray,
    segments: tuple[RootCauseSegment, ...],
    percentages: tuple[int, ...] = (100, 150),
) -> dict[str, float | None]:
    """HitRate@P% of a ``[T, F]`` per-metric attribution against interpretation segments.

    For each segment, metrics are ranked by their mean point score over the segment's rows;
    HitRate@P% = |top ⌊P%·|G|⌋ ∩ G| / |G| for the segment's ground-truth dims G, averaged over
    segments (ties broken by metric order). ``None`` without segments.
    """
    rates: dict[str, list[float]] = {f"hitrate@{p}": [] for p in percentages}
    for segment in segments:
        truth = set(segment.dims)
        if not truth:
            continue
        means = metric_point_scores[segment.start : segment.end + 1].mean(axis=0)
        ranking = np.argsort(-means, kind="stable")
        for p in percentages:
            top = set(ranking[: (p * len(truth)) // 100].tolist())
            rates[f"hitrate@{p}"].append(len(top & truth) / len(truth))
    return {k: (float(np.mean(v)) if v else None) for k, v in rates.items()}
