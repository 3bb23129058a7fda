"""Inject labelled anomalies into a canonical combined dataset, for benchmarks on any data.

The demo generator injects incidents into its latent signals; this module does the same for any
recording (demo or file) *after* the fact, directly on the long combined table, so a detector can
be judged on data it has never seen labels for. Each :class:`Injection` records exactly what was
changed: which kind, on which service and metric, over which UTC range ``[start, end)``, and by how
much (in units of that service's metric spread, see :func:`robust_spread`).

Kinds:

* ``spike``: ``+magnitude × spread`` on a short burst of that service's rows;
* ``level_shift``: ``+magnitude × spread`` on every row of the span;
* ``noise``: ``N(0, magnitude × spread)`` added to every row of the span;
* ``dropout``: every row of that service in the span is deleted (the service goes silent). Its
  ``metric`` is ``event_count``, one of the densified features that show silence (the benchmark
  credits either of them, ``SILENCE_FEATURES``), and its magnitude 0;
* ``drift``: a ramp from 0 to ``+magnitude × spread`` over the span, as a leak grows;
* ``cascade``: a step of ``+magnitude × spread`` on a service that has callers in the call graph
  (``edges``), echoed on the same metric by every service upstream of it at half the size per
  hop and a quarter of the span later per hop (``Injection.callers``), as slowness travels from
  callee to caller. The injection's ``service`` is the origin, so attribution is judged on
  finding it rather than its louder-by-count callers.

Everything is vectorised over rows; the only Python loop is over the handful of injections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.data.schema import SERVICE, TIMESTAMP
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.explain.call_graph import adjacency, breadth_first
from ml_monitoring_service.prepare.densify import EVENT_COUNT

# The kinds any recording can take; a cascade also needs a call graph.
BASIC_KINDS: tuple[str, ...] = ("spike", "dropout", "level_shift", "noise")
INJECTION_KINDS: tuple[str, ...] = (*BASIC_KINDS, "drift", "cascade")
DROPOUT_METRIC = EVENT_COUNT

# Magnitudes in spreads: large enough to be real, small enough not to be trivial. A drift ends at
# its magnitude (half of it on average); a cascade's callers get half of it per hop.
DEFAULT_MAGNITUDES: dict[str, float] = {
    "spike": 6.0,
    "level_shift": 3.0,
    "noise": 3.0,
    "drift": 4.0,
    "cascade": 4.0,
}
_CASCADE_DECAY = 0.5  # size of a caller's echo relative to its callee's
_CASCADE_LAG = 0.25  # delay of each hop, as a share of the span
_MARGIN = 0.05  # share of the stretch kept free of injections at each end
_MAX_DURATION = pd.Timedelta("8min")  # longest span of a level shift, noise or dropout
_MIN_ROWS = 3  # rows a service needs inside a span to be chosen for a value injection


@dataclass(frozen=True)
class Injection:
    """One injected anomaly; ``start`` inclusive, ``end`` exclusive, both UTC."""

    kind: str
    service: str
    metric: str
    start: pd.Timestamp
    end: pd.Timestamp
    magnitude: float
    callers: tuple[str, ...] = ()  # cascade: the upstream services that echo it, nearest first

    def as_dict(self) -> dict[str, str | float | list[str]]:
        """Plain values for JSON output."""
        return {
            "kind": self.kind,
            "service": self.service,
            "metric": self.metric,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "magnitude": self.magnitude,
            "callers": list(self.callers),
        }


def robust_spread(values: pd.Series | np.ndarray) -> float:
    """IQR / 1.349 (σ for normal data); the standard deviation if that is 0; then a floor.

    The floor ``max(0.1·|median|, 1)`` gives constant series (a gauge that never moved) a spread
    in their own units, so an injection on them is still a visible, bounded change.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return 1.0
    q75, q25 = np.percentile(data, [75, 25])
    spread = float(q75 - q25) / 1.349
    if spread > 0:
        return spread
    std = float(np.std(data))
    if std > 0:
        return std
    return max(0.1 * abs(float(np.median(data))), 1.0)


def inject(
    frame: pd.DataFrame,
    services: Sequence[str],
    metrics: Sequence[str],
    kinds: Sequence[str] = BASIC_KINDS,
    count: int = 8,
    seed: int = 0,
    *,
    reference: pd.DataFrame | None = None,
    magnitudes: dict[str, float] | None = None,
    max_duration: pd.Timedelta = _MAX_DURATION,
    edges: Sequence[tuple[str, str]] = (),
) -> tuple[pd.DataFrame, list[Injection]]:
    """Return a copy of ``frame`` with ``count`` non-overlapping injections, and the injections.

    Kinds are used in turn (``count=8`` with four kinds gives two of each) in a seeded random
    order. The stretch between the first and last timestamp of ``frame`` (less a 5 % margin at each
    end) is cut into ``count`` equal slots; each injection lies inside its own slot, so spans never
    overlap. Spreads come from ``reference`` (the clean training data) when given, else from
    ``frame`` before injection. Metrics that are constant for the chosen service are avoided
    when the service has a varying one. ``edges`` (caller, callee) is the call graph a
    ``cascade`` travels along. The same arguments always give the same result.
    """
    unknown = [k for k in kinds if k not in INJECTION_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"injection kinds {list(kinds)} must be non-empty and from {INJECTION_KINDS}"
        )
    edges = [(a, b) for a, b in edges if a in services and b in services]
    callers_of = adjacency(edges, upstream=True)
    upstream = {s: breadth_first(s, callers_of) for s in services}  # (hops, caller), nearest first
    if "cascade" in kinds and not any(upstream.values()):
        raise ConfigError(
            "cascade injections need a call graph in which some service has a caller; "
            f"got {len(edges)} edges among {list(services)}"
        )
    if count < 1:
        raise ConfigError(f"injection count must be at least 1, got {count}")
    if frame.empty:
        raise ConfigError("cannot inject into an empty dataset")
    sizes = {**DEFAULT_MAGNITUDES, **(magnitudes or {})}
    rng = np.random.default_rng(seed)
    out = frame.reset_index(drop=True).copy()
    clean = out if reference is None else reference
    times = out[TIMESTAMP]
    first, last = times.iloc[0], times.iloc[-1]
    margin = (last - first) * _MARGIN
    lo, hi = first + margin, last - margin
    slot = (hi - lo) / count
    if slot <= pd.Timedelta(0):
        raise ConfigError(f"stretch {first} .. {last} is too short for {count} injections")
    order = rng.permutation([kinds[i % len(kinds)] for i in range(count)])
    service_codes = out[SERVICE].to_numpy()
    stamps = pd.DatetimeIndex(times).asi8
    drop = np.zeros(len(out), dtype=bool)
    injections: list[Injection] = []
    for i, kind in enumerate(str(k) for k in order):
        duration = min(max_duration, slot * 0.5) * rng.uniform(0.6, 1.0)
        if kind == "spike":
            duration = max(duration / 4, min(slot * 0.2, pd.Timedelta("45s")))
        start = lo + slot * i + (slot - duration) * rng.uniform(0.0, 1.0)
        end = start + duration
        in_span = (stamps >= start.value) & (stamps < end.value)
        eligible = [s for s in services if upstream[s]] if kind == "cascade" else services
        service = _pick_service(service_codes[in_span], eligible, rng)
        rows = in_span & (service_codes == service)
        if kind == "dropout":
            drop |= rows
            injections.append(Injection(kind, service, DROPOUT_METRIC, start, end, 0.0))
            continue
        metric = _pick_metric(clean, service, metrics, rng)
        spread = robust_spread(clean.loc[clean[SERVICE] == service, metric])
        k = float(sizes[kind])
        column = out[metric].to_numpy(dtype=np.float64, copy=True)
        if kind == "noise":
            column[rows] += rng.normal(0.0, k * spread, size=int(rows.sum()))
        elif kind == "drift":
            column[rows] += k * spread * (stamps[rows] - start.value) / (end.value - start.value)
        else:  # spike, level_shift and a cascade's origin: a step up for the span
            column[rows] += k * spread
        callers: tuple[str, ...] = ()
        if kind == "cascade":
            callers = tuple(caller for _, caller in upstream[service])
            for hops, caller in upstream[service]:
                since = start + duration * (_CASCADE_LAG * hops)
                echo = (stamps >= since.value) & (stamps < end.value) & (service_codes == caller)
                caller_spread = robust_spread(clean.loc[clean[SERVICE] == caller, metric])
                column[echo] += k * _CASCADE_DECAY**hops * caller_spread
        out[metric] = column
        injections.append(Injection(kind, service, metric, start, end, k, callers))
    return out.loc[~drop].reset_index(drop=True), injections


def _pick_service(present: np.ndarray, services: Sequence[str], rng: np.random.Generator) -> str:
    """A random service with at least a few rows in the span; any configured one if none has."""
    names, counts = np.unique(present.astype(str), return_counts=True)
    busy = sorted(set(names[counts >= _MIN_ROWS]) & set(services))
    pool = busy or sorted(set(names) & set(services)) or list(services)
    return str(pool[int(rng.integers(len(pool)))])


def _pick_metric(
    clean: pd.DataFrame, service: str, metrics: Sequence[str], rng: np.random.Generator
) -> str:
    """A random metric that varies for ``service`` in the clean data; any metric if none does."""
    rows = clean.loc[clean[SERVICE] == service, list(metrics)]
    varying = [m for m in metrics if rows[m].nunique(dropna=True) > 1]
    pool = varying or list(metrics)
    return str(pool[int(rng.integers(len(pool)))])
