"""Retry and circuit-breaker behaviour shared by the Splunk and Prometheus clients."""

from __future__ import annotations

import pytest

from ml_monitoring_service.collectors.resilience import (
    CircuitBreaker,
    RetryPolicy,
    call_with_retries,
)
from ml_monitoring_service.errors import BackendError, BackendUnavailableError


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``"ok"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def _always(_: BaseException) -> bool:
    return True


def test_transient_failures_are_retried_with_doubling_backoff() -> None:
    waits: list[float] = []
    flaky = Flaky(2, ConnectionError("refused"))
    policy = RetryPolicy(attempts=3, backoff_s=0.5)
    result = call_with_retries(
        flaky,
        backend="prometheus",
        what="up",
        is_retryable=_always,
        policy=policy,
        sleep=waits.append,
    )
    assert result == "ok"
    assert flaky.calls == 3
    assert waits == [0.5, 1.0]


def test_giving_up_names_backend_query_and_cause() -> None:
    flaky = Flaky(10, ConnectionError("connection refused"))
    with pytest.raises(BackendError) as info:
        call_with_retries(
            flaky,
            backend="prometheus",
            what="query 'up'",
            is_retryable=_always,
            policy=RetryPolicy(attempts=2, backoff_s=0),
            sleep=lambda _: None,
        )
    message = str(info.value)
    assert "prometheus" in message and "query 'up'" in message
    assert "ConnectionError" in message and "connection refused" in message
    assert flaky.calls == 2


def test_non_retryable_errors_fail_at_once() -> None:
    flaky = Flaky(10, ValueError("bad query"))
    with pytest.raises(BackendError):
        call_with_retries(
            flaky,
            backend="splunk",
            what="search",
            is_retryable=lambda e: False,
            policy=RetryPolicy(attempts=5, backoff_s=0),
            sleep=lambda _: None,
        )
    assert flaky.calls == 1


def test_breaker_opens_after_threshold_and_half_opens_after_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker("splunk", failure_threshold=2, reset_after_s=30, clock=lambda: now[0])
    dead = Flaky(100, ConnectionError("down"))
    for _ in range(2):
        with pytest.raises(BackendError):
            call_with_retries(
                dead,
                backend="splunk",
                what="search",
                is_retryable=_always,
                policy=RetryPolicy(attempts=1),
                breaker=breaker,
                sleep=lambda _: None,
            )
    assert breaker.is_open
    with pytest.raises(BackendUnavailableError, match="circuit open"):
        call_with_retries(
            dead,
            backend="splunk",
            what="search",
            is_retryable=_always,
            breaker=breaker,
            sleep=lambda _: None,
        )
    assert dead.calls == 2  # the open circuit sent nothing
    now[0] = 31.0
    healthy = Flaky(0, ConnectionError("unused"))
    assert (
        call_with_retries(
            healthy,
            backend="splunk",
            what="search",
            is_retryable=_always,
            breaker=breaker,
            sleep=lambda _: None,
        )
        == "ok"
    )
    assert not breaker.is_open


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_answered_errors_do_not_open_the_breaker() -> None:
    """A rejected query means the backend is up: it must not cut off every other query."""
    breaker = CircuitBreaker("prometheus", failure_threshold=2)
    for _ in range(5):
        with pytest.raises(BackendError):
            call_with_retries(
                Flaky(1, ValueError("bad_data: parse error")),
                backend="prometheus",
                what="query",
                is_retryable=lambda e: False,
                breaker=breaker,
                sleep=lambda _: None,
            )
    assert not breaker.is_open
