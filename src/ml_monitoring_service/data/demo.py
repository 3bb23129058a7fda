"""The embedded ``demo`` source: seeded microservice telemetry with labelled incidents.

It stands in for Splunk + Prometheus so the whole pipeline can be trained, scored and evaluated
without access to either, and so detectors can be judged against known ground truth.

How it is built, and why:

* Latent signals live on a 1-second grid. Traffic enters at services nobody calls, follows a daily
  cycle, and flows down the call graph (a callee's request rate is its callers' rates times the
  calls each of their requests makes). CPU follows load; memory wanders slowly around a level;
  latency is a service's own time plus the latency of the calls it waits on, so slowness flows
  *up* the graph; error intensity flows up partially, as callers surface some callee failures.
* Incidents are injected into those latent signals *before* propagation, so a slow payment
  service makes checkout and frontend slow too, exactly as it would in production; the labels
  list every service whose signals actually moved.
* Observations are log events at irregular times (a Poisson process per service whose rate
  follows its load), each carrying the latent values at that instant, like a log line enriched
  with the metrics scraped at that moment. That irregularity is what the densifier must handle
  on real data. Each event also has a log line (``message``, written by ``demo_logs.py``) that
  fits its severity and, during an incident, the incident.

Everything is vectorised over the grid; the only Python loops run over services, edges and
incidents, which are few.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_monitoring_service.data.demo_logs import demo_messages
from ml_monitoring_service.data.schema import (
    MESSAGE,
    SERVICE,
    SEVERITY,
    TIMESTAMP,
    validate_combined,
)
from ml_monitoring_service.errors import ConfigError

DEMO_SERVICES: tuple[str, ...] = ("frontend", "cart", "catalog", "checkout", "payment", "shipping")
DEMO_EDGES: tuple[tuple[str, str], ...] = (
    ("frontend", "cart"),
    ("frontend", "catalog"),
    ("frontend", "checkout"),
    ("checkout", "payment"),
    ("checkout", "shipping"),
)
DEMO_METRICS: tuple[str, ...] = ("cpu", "memory", "latency", "request_rate", "error_count")
ALL_KINDS: tuple[str, ...] = (
    "spike",
    "level_shift",
    "dropout",
    "noise",
    "memory_leak",
    "latency_cascade",
)

DEFAULT_INCIDENT_EVERY = pd.Timedelta("40min")

_GRID_S = 1  # resolution of the latent signals, seconds
_CLEAN_MARGIN = 0.10  # share of the range kept free of incidents at each end
_AFFECTED_SIGMA = 0.5  # mean |change| (in normal spreads) that makes a service "affected"
_ERROR_PROPAGATION = 0.3  # share of a callee's errors a caller surfaces as its own
_MAX_LOAD = 3.0  # cap on load relative to nominal when scaling event rates

# Incident lengths in minutes (low, high); a leak needs longer to be a leak and not a step.
_DURATION_MIN: dict[str, tuple[float, float]] = {
    "spike": (3.0, 5.0),
    "level_shift": (5.0, 8.0),
    "dropout": (3.0, 6.0),
    "noise": (4.0, 8.0),
    "memory_leak": (15.0, 25.0),
    "latency_cascade": (4.0, 8.0),
}


@dataclass(frozen=True)
class Incident:
    """A labelled injected anomaly; ``start`` inclusive, ``end`` exclusive, both UTC."""

    kind: str
    service: str
    metrics: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    affected_services: tuple[str, ...]


@dataclass(frozen=True)
class DemoData:
    """A generated recording and the ground truth that was injected into it."""

    frame: pd.DataFrame
    incidents: tuple[Incident, ...]


@dataclass(frozen=True)
class _Topology:
    """Call graph as index arrays, so propagation is matrix arithmetic."""

    services: tuple[str, ...]
    fanout: np.ndarray  # [S, S]: calls to callee (column) per request of caller (row)
    order: tuple[int, ...]  # callers before callees

    def callers(self, s: int) -> np.ndarray:
        return np.flatnonzero(self.fanout[:, s] > 0)

    def distances_from(self, root: int) -> np.ndarray:
        """Hops from ``root`` ignoring direction: orders labels nearest-first."""
        linked = (self.fanout > 0) | (self.fanout.T > 0)
        dist = np.full(len(self.services), np.inf)
        dist[root] = 0
        frontier = np.zeros(len(self.services), dtype=bool)
        frontier[root] = True
        hops = 0
        while frontier.any():
            hops += 1
            reached = linked[frontier].any(axis=0) & np.isinf(dist)
            dist[reached] = hops
            frontier = reached
        return dist


@dataclass(frozen=True)
class _Profile:
    """Per-service base levels; one value per service in topology order."""

    entry_rate: np.ndarray  # external requests/s at peak-free average (0 for internal services)
    nominal_rate: np.ndarray  # long-run average requests/s after propagation
    cpu_idle: np.ndarray  # %
    cpu_per_request: np.ndarray  # % per request/s
    memory_level: np.ndarray  # %
    own_latency: np.ndarray  # ms
    error_rate: np.ndarray  # expected errors per event at nominal load
    peak_hour: float  # UTC hour of the daily traffic peak


@dataclass(frozen=True)
class _Noise:
    """Random parts of the latent signals, drawn once so clean and injected runs share them."""

    rate: np.ndarray  # multiplicative, [S, n]
    cpu: np.ndarray  # additive %, [S, n]
    memory: np.ndarray  # additive %, [S, n]
    latency: np.ndarray  # multiplicative (log-normal factor), [S, n]


@dataclass(frozen=True)
class _Injection:
    """``x[lo:hi] = x[lo:hi] * scale + add`` on one latent signal of one service."""

    service: int
    metric: str
    lo: int
    hi: int
    scale: float = 1.0
    add: np.ndarray | float = 0.0


def _utc(value: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _topology(
    services: Sequence[str], edges: Sequence[tuple[str, str]], rng: np.random.Generator
) -> _Topology:
    names = tuple(services)
    if not names:
        raise ConfigError("demo source needs at least one service")
    if len(set(names)) != len(names):
        raise ConfigError(f"demo services must be unique, got {list(names)}")
    index = {name: i for i, name in enumerate(names)}
    fanout = np.zeros((len(names), len(names)))
    for caller, callee in edges:
        unknown = [n for n in (caller, callee) if n not in index]
        if unknown:
            raise ConfigError(
                f"demo edge {caller!r} -> {callee!r} names unknown services {unknown}"
            )
        if caller == callee:
            raise ConfigError(f"demo edge {caller!r} -> {callee!r} is a self-call")
        fanout[index[caller], index[callee]] = rng.uniform(0.6, 1.2)
    # Kahn's algorithm: repeatedly take services whose callers are all placed.
    pending = fanout > 0
    order: list[int] = []
    remaining = set(range(len(names)))
    while remaining:
        ready = sorted(s for s in remaining if not pending[list(remaining), s].any())
        if not ready:
            cycle = sorted(names[s] for s in remaining)
            raise ConfigError(f"demo call graph has a cycle among {cycle}")
        order.extend(ready)
        remaining.difference_update(ready)
    return _Topology(names, fanout, tuple(order))


def _profile(topo: _Topology, rng: np.random.Generator) -> _Profile:
    n = len(topo.services)
    has_callers = topo.fanout.sum(axis=0) > 0
    entry = np.where(has_callers, 0.0, rng.uniform(20.0, 60.0, n))
    # Long-run rate solves rate = entry + F^T rate.
    nominal = np.linalg.solve(np.eye(n) - topo.fanout.T, entry)
    busy = rng.uniform(20.0, 45.0, n)
    return _Profile(
        entry_rate=entry,
        nominal_rate=nominal,
        cpu_idle=rng.uniform(3.0, 12.0, n),
        cpu_per_request=busy / np.maximum(nominal, 1e-9),
        memory_level=rng.uniform(35.0, 70.0, n),
        own_latency=rng.uniform(8.0, 40.0, n),
        error_rate=rng.uniform(0.03, 0.15, n),
        peak_hour=float(rng.uniform(13.0, 17.0)),
    )


def _ar1(rng: np.random.Generator, rows: int, steps: int, phi: float, std: float) -> np.ndarray:
    """Stationary AR(1) paths, computed as a truncated FFT convolution instead of a loop."""
    taps = int(np.ceil(np.log(1e-6) / np.log(phi)))
    kernel = phi ** np.arange(taps)
    shocks = rng.normal(0.0, std * np.sqrt(1.0 - phi**2), (rows, steps + taps))
    size = steps + 2 * taps
    full = np.fft.irfft(np.fft.rfft(shocks, size) * np.fft.rfft(kernel, size), size)
    return full[:, taps : taps + steps]  # skip the warm-up so every step has full history


def _upsample(coarse: np.ndarray, step_s: int, n: int) -> np.ndarray:
    """Linear interpolation of a per-``step_s`` path onto the 1-second grid."""
    position = np.arange(n) / step_s
    left = np.floor(position).astype(int)
    weight = position - left
    return coarse[:, left] * (1.0 - weight) + coarse[:, left + 1] * weight


def _noise(n_services: int, n: int, rng: np.random.Generator) -> _Noise:
    minutes = n // 60 + 2
    return _Noise(
        rate=_upsample(_ar1(rng, n_services, minutes, 0.9, 0.05), 60, n)
        + rng.normal(0.0, 0.03, (n_services, n)),
        cpu=rng.normal(0.0, 1.5, (n_services, n)),
        memory=_upsample(_ar1(rng, n_services, minutes, 0.97, 2.0), 60, n)
        + rng.normal(0.0, 0.3, (n_services, n)),
        latency=rng.lognormal(0.0, 0.1, (n_services, n)),
    )


def _apply(signal: np.ndarray, injections: Sequence[_Injection], service: int, metric: str) -> None:
    for inj in injections:
        if inj.service == service and inj.metric == metric:
            signal[inj.lo : inj.hi] = signal[inj.lo : inj.hi] * inj.scale + inj.add


def _simulate(
    topo: _Topology,
    prof: _Profile,
    noise: _Noise,
    hours: np.ndarray,
    injections: Sequence[_Injection],
) -> dict[str, np.ndarray]:
    """Latent signals [S, n] per metric; ``error_count`` holds the Poisson intensity."""
    n_services, n = noise.rate.shape
    season = 1.0 + 0.35 * np.cos(2 * np.pi * (hours - prof.peak_hour) / 24.0)
    rate = np.zeros((n_services, n))
    for s in topo.order:  # callers first: a callee's load is known once its callers' is
        incoming = prof.entry_rate[s] * season + topo.fanout[:, s] @ rate
        rate[s] = incoming * (1.0 + noise.rate[s])
        _apply(rate[s], injections, s, "request_rate")
    rate = np.maximum(rate, 0.0)
    load = rate / np.maximum(prof.nominal_rate, 1e-9)[:, None]

    cpu = prof.cpu_idle[:, None] + prof.cpu_per_request[:, None] * rate + noise.cpu
    memory = prof.memory_level[:, None] + noise.memory
    own_latency = prof.own_latency[:, None] * (1.0 + 0.25 * (load - 1.0)) * noise.latency
    own_errors = prof.error_rate[:, None] * np.maximum(1.0 + 0.5 * (load - 1.0), 0.0)
    for s in range(n_services):
        _apply(cpu[s], injections, s, "cpu")
        _apply(memory[s], injections, s, "memory")
        _apply(own_latency[s], injections, s, "latency")
        _apply(own_errors[s], injections, s, "error_count")

    latency = np.maximum(own_latency, 0.1)
    errors = np.maximum(own_errors, 0.0)
    for s in reversed(topo.order):  # callees first: a caller waits on them
        callees = topo.fanout[s]
        latency[s] = latency[s] + callees @ latency
        errors[s] = errors[s] + _ERROR_PROPAGATION * (callees @ errors)
    return {
        "cpu": np.clip(cpu, 0.0, 100.0),
        "memory": np.clip(memory, 0.0, 100.0),
        "latency": latency,
        "request_rate": rate,
        "error_count": errors,
    }


def _spreads(latent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Normal spread per service and metric, the unit incident magnitudes are given in."""
    out = {}
    for metric, values in latent.items():
        spread = values.std(axis=1)
        if metric == "error_count":  # observed counts add Poisson variance to the intensity's
            spread = np.sqrt(spread**2 + values.mean(axis=1))
        out[metric] = np.maximum(spread, 1e-6 + 0.01 * np.abs(values.mean(axis=1)))
    return out


def _slots(
    n: int, every_s: float | None, kinds: Sequence[str], rng: np.random.Generator
) -> list[tuple[str, int, int]]:
    """Non-overlapping (kind, lo, hi) grid windows, one per slot of about ``every_s`` seconds."""
    if every_s is None:
        return []
    margin = int(n * _CLEAN_MARGIN)
    usable = n - 2 * margin
    shortest = 60 * min(_DURATION_MIN[k][0] for k in kinds)
    if usable < 2 * shortest:
        return []
    count = max(1, int(round(usable / every_s)))
    slot = usable / count
    windows = []
    for k in range(count):
        kind = kinds[k % len(kinds)]
        low, high = _DURATION_MIN[kind]
        duration = min(60 * rng.uniform(low, high), 0.8 * slot)
        # The 10%/90% band keeps a gap between neighbours, so incidents never touch.
        offset = rng.uniform(0.1, 0.9) * (slot - duration)
        lo = margin + int(k * slot + offset)
        windows.append((kind, lo, lo + max(int(duration), 1)))
    return windows


def _plan(
    kind: str,
    lo: int,
    hi: int,
    topo: _Topology,
    spread: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[int, tuple[str, ...], list[_Injection]]:
    """Root service, named metrics and the latent changes for one incident."""
    n_services = len(topo.services)
    called = [s for s in range(n_services) if topo.callers(s).size]
    if kind in ("dropout", "latency_cascade") and called:
        root = int(rng.choice(called))  # both are only interesting where someone calls the root
    else:
        root = int(rng.integers(n_services))
    width = hi - lo

    def sigma(metric: str, s: int = root) -> float:
        return float(spread[metric][s])

    if kind in ("spike", "level_shift", "noise"):
        chosen = rng.choice(DEMO_METRICS, size=int(rng.integers(1, 3)), replace=False)
        metrics = tuple(str(m) for m in chosen)
        injections = []
        for m in metrics:
            if kind == "spike":
                add: np.ndarray | float = rng.uniform(6.0, 10.0) * sigma(m)
            elif kind == "level_shift":
                add = 4.0 * sigma(m)
            else:
                add = rng.normal(0.0, 4.0 * sigma(m), width)
                if m == "error_count":  # an intensity near zero can only be erratic upwards
                    add = np.abs(add)
            injections.append(_Injection(root, m, lo, hi, add=add))
        return root, metrics, injections
    if kind == "memory_leak":
        ramp = np.linspace(0.0, 5.0 * sigma("memory"), width)
        return root, ("memory",), [_Injection(root, "memory", lo, hi, add=ramp)]
    if kind == "dropout":
        # The process is gone: almost no traffic or CPU, and every caller now sees failed calls.
        injections = [
            _Injection(root, "request_rate", lo, hi, scale=0.02),
            _Injection(root, "cpu", lo, hi, scale=0.05),
        ]
        injections += [
            _Injection(int(c), "error_count", lo, hi, add=6.0 * sigma("error_count", int(c)))
            for c in topo.callers(root)
        ]
        return root, ("request_rate", "cpu"), injections
    if kind == "latency_cascade":
        return (
            root,
            ("latency", "cpu"),
            [
                _Injection(root, "latency", lo, hi, scale=rng.uniform(3.0, 5.0)),
                _Injection(root, "cpu", lo, hi, add=3.0 * sigma("cpu")),
            ],
        )
    raise ConfigError(f"unknown incident kind {kind!r} (known: {list(ALL_KINDS)})")


def _affected(
    root: int,
    lo: int,
    hi: int,
    topo: _Topology,
    clean: dict[str, np.ndarray],
    injected: dict[str, np.ndarray],
    spread: dict[str, np.ndarray],
) -> tuple[str, ...]:
    """Services whose latent signals moved by at least one normal spread, root first."""
    moved = np.zeros(len(topo.services), dtype=bool)
    for metric in DEMO_METRICS:
        change = np.abs(injected[metric][:, lo:hi] - clean[metric][:, lo:hi]).mean(axis=1)
        moved |= change >= _AFFECTED_SIGMA * spread[metric]
    moved[root] = False
    dist = topo.distances_from(root)
    others = sorted(np.flatnonzero(moved), key=lambda s: (dist[s], s))
    return (topo.services[root], *(topo.services[s] for s in others))


def _events(
    latent: dict[str, np.ndarray],
    prof: _Profile,
    silent: list[tuple[int, int, int]],
    start_ns: int,
    duration_s: float,
    rate_per_min: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Sample log events by thinning a Poisson process whose intensity follows each load."""
    n_services, n = latent["request_rate"].shape
    load = latent["request_rate"] / np.maximum(prof.nominal_rate, 1e-9)[:, None]
    intensity = rate_per_min / 60.0 * np.clip(load, 0.0, _MAX_LOAD)
    for s, lo, hi in silent:
        intensity[s, lo:hi] = 0.0
    parts = []
    for s in range(n_services):
        peak = float(intensity[s].max())
        if peak <= 0.0:
            continue
        offsets = rng.uniform(0.0, duration_s, rng.poisson(peak * duration_s))
        cell = np.minimum((offsets // _GRID_S).astype(int), n - 1)
        keep = rng.random(offsets.size) * peak < intensity[s, cell]
        offsets, cell = offsets[keep], cell[keep]
        values = {m: latent[m][s, cell] for m in DEMO_METRICS if m != "error_count"}
        errors = rng.poisson(latent["error_count"][s, cell]).astype(float)
        # Error-level and warning-level lines become likelier as the event's error count grows.
        p_error = 0.002 + 0.6 * (1.0 - np.exp(-0.3 * errors))
        p_warning = 0.02 + 0.3 * (1.0 - np.exp(-0.5 * errors))
        draw = rng.random(errors.size)
        severity = np.where(draw < p_error, 2.0, np.where(draw < p_error + p_warning, 1.0, 0.0))
        parts.append(
            pd.DataFrame(
                {
                    TIMESTAMP: start_ns + np.round(offsets * 1e9).astype(np.int64),
                    SERVICE: s,
                    **values,
                    "error_count": errors,
                    SEVERITY: severity,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def generate_demo(
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    seed: int,
    services: Sequence[str] = DEMO_SERVICES,
    edges: Sequence[tuple[str, str]] = DEMO_EDGES,
    incident_every: pd.Timedelta | None = DEFAULT_INCIDENT_EVERY,
    incident_kinds: Sequence[str] = ALL_KINDS,
    event_rate_per_min: float = 6.0,
) -> DemoData:
    """Generate a validated combined dataset for ``[start, end)`` and the incidents in it.

    Naive ``start``/``end`` are taken as UTC. ``incident_every=None`` gives a clean period for
    training; with the same seed and range it is also the exact counterfactual of the incident
    run (same underlying signals, no injections), which is how the tests measure each incident.
    The same arguments always give the same frame and incidents. Very short ranges at low event
    rates can leave a service without events, which validation reports as an error.
    """
    start, end = _utc(start), _utc(end)
    duration_s = (end - start).total_seconds()
    if duration_s < 60:
        raise ConfigError(f"demo range must span at least a minute, got {start} .. {end}")
    if event_rate_per_min <= 0:
        raise ConfigError(f"event_rate_per_min must be positive, got {event_rate_per_min}")
    kinds = tuple(incident_kinds)
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"incident_kinds {list(kinds)} must be non-empty and from {list(ALL_KINDS)}"
        )
    every_s = None if incident_every is None else pd.Timedelta(incident_every).total_seconds()
    if every_s is not None and every_s <= 0:
        raise ConfigError(f"incident_every must be positive, got {incident_every}")

    if seed < 0:
        raise ConfigError(f"demo seed must be a non-negative integer, got {seed}")
    start_ns = start.value
    # The system (call-graph weights, base levels, daily peak) depends on the seed alone, so a
    # training and an inference period generated with one seed describe the same services. The
    # fluctuations, incidents and events also depend on where the range starts, so consecutive
    # periods do not replay the same noise.
    topo_rng, profile_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    # The log text has a stream of its own, spawned last: the first three children are the same
    # as before text existed, so the numbers did not change when text was added.
    noise_rng, incident_rng, event_rng, text_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, start_ns % 2**64]).spawn(4)
    )
    topo = _topology(services, edges, topo_rng)
    prof = _profile(topo, profile_rng)
    n = int(np.ceil(duration_s / _GRID_S))
    hours = ((start_ns / 1e9 + np.arange(n) * _GRID_S) % 86_400) / 3_600
    noise = _noise(len(topo.services), n, noise_rng)

    clean = _simulate(topo, prof, noise, hours, [])
    spread = _spreads(clean)
    plans = [
        (kind, lo, hi, *_plan(kind, lo, hi, topo, spread, incident_rng))
        for kind, lo, hi in _slots(n, every_s, kinds, incident_rng)
    ]
    injections = [inj for *_, injs in plans for inj in injs]
    latent = _simulate(topo, prof, noise, hours, injections) if injections else clean

    incidents = tuple(
        Incident(
            kind=kind,
            service=topo.services[root],
            metrics=metrics,
            start=start + pd.Timedelta(seconds=lo * _GRID_S),
            end=start + pd.Timedelta(seconds=hi * _GRID_S),
            affected_services=_affected(root, lo, hi, topo, clean, latent, spread),
        )
        for kind, lo, hi, root, metrics, _ in plans
    )
    silent = [(root, lo, hi) for kind, lo, hi, root, *_ in plans if kind == "dropout"]
    events = _events(latent, prof, silent, start_ns, duration_s, event_rate_per_min, event_rng)
    events[TIMESTAMP] = pd.to_datetime(events[TIMESTAMP], unit="ns", utc=True)
    events[SERVICE] = np.asarray(topo.services, dtype=object)[events[SERVICE].to_numpy()]
    frame = validate_combined(events, topo.services, DEMO_METRICS)
    frame[MESSAGE] = demo_messages(frame, incidents, edges, text_rng)
    return DemoData(frame=frame, incidents=incidents)
