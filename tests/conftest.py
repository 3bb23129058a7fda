"""Shared fixtures: small, seeded tensors so detector tests run in seconds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ml_monitoring_service.data.demo import DemoData, generate_demo
from ml_monitoring_service.prepare.densify import ServiceTensor

SERVICES = ("api", "db", "cache")
# A four-service demo set, both variants, small windows: the base of the end-to-end test configs,
# which append their own model, schedule and alerting lines.
TINY_DEMO_SET = """
service_sets:
  tiny:
    source: demo
    services: [frontend, cart, checkout, payment]
    relationships: {frontend: [cart, checkout], checkout: [payment]}
    metrics: {cpu: q1, memory: q2, latency: q3, request_rate: q4, error_count: q5}
    demo: {seed: 3, incident_every: 20min, event_rate_per_min: 3}
    preprocessing: {window_size: 16, train_stride: 4, variants: [event, "grid:30s"]}
"""
FEATURES = ("cpu", "latency", "severity_level")


def seasonal_tensor(
    n_steps: int, seed: int, start: str = "2024-01-01", freq: str = "30s"
) -> ServiceTensor:
    """Correlated periodic signals for three services: db latency drives api latency."""
    rng = np.random.default_rng(seed)
    timestamps = pd.date_range(start, periods=n_steps, freq=freq, tz="UTC")
    phase = np.arange(n_steps) * 2 * np.pi / 64
    load = 1.0 + 0.5 * np.sin(phase)
    values = np.zeros((n_steps, len(SERVICES), len(FEATURES)))
    values[:, 1, 0] = 20 * load + rng.normal(0, 0.5, n_steps)
    values[:, 1, 1] = 5 * load + rng.normal(0, 0.2, n_steps)
    values[:, 2, 0] = 10 + 3 * np.cos(phase) + rng.normal(0, 0.3, n_steps)
    values[:, 2, 1] = 1 + 0.1 * np.cos(phase) + rng.normal(0, 0.02, n_steps)
    values[:, 0, 0] = 30 * load + rng.normal(0, 0.8, n_steps)
    values[:, 0, 1] = values[:, 1, 1] + values[:, 2, 1] + 2 + rng.normal(0, 0.2, n_steps)
    return ServiceTensor(
        values=values,
        observed=np.ones((n_steps, len(SERVICES)), dtype=bool),
        timestamps=timestamps,
        services=SERVICES,
        features=FEATURES,
    )


@pytest.fixture(scope="session")
def train_val_test() -> tuple[ServiceTensor, ServiceTensor, ServiceTensor]:
    """Contiguous train / validation / test stretches of one seeded signal."""
    full = seasonal_tensor(1600, seed=3)
    return full.slice(0, 1000), full.slice(1000, 1300), full.slice(1300, 1600)


def with_spike(
    tensor: ServiceTensor, step: int, service: int, feature: int, size: float
) -> ServiceTensor:
    """Copy of ``tensor`` with ``size`` added at one step of one channel."""
    values = tensor.values.copy()
    values[step : step + 3, service, feature] += size
    return dataclasses.replace(tensor, values=values)


@pytest.fixture(scope="session")
def demo() -> DemoData:
    """Six busy hours of the demo with an incident every 30 minutes: log text to mine."""
    start = pd.Timestamp("2024-05-06T00:00:00Z")
    return generate_demo(
        start,
        start + pd.Timedelta("6h"),
        seed=11,
        incident_every=pd.Timedelta("30min"),
        event_rate_per_min=20,
    )
