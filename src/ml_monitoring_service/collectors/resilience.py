"""Retries, backoff and a circuit breaker shared by every backend client.

Splunk and Prometheus fail in the same ways (connection refused, 5xx under load, timeouts), and an
operator wants the same behaviour from both: a few quick retries for blips, then a clear error
naming the backend, the query and the cause, and, when a backend is down for good, no hammering it
every minute. Keeping this in one place means both clients behave alike and are tested once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ml_monitoring_service.errors import BackendError, BackendUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try a request and how long to wait between tries (doubling each time)."""

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff times must not be negative")

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt`` (1-based; the first try waits 0)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.backoff_s * 2 ** (attempt - 2), self.max_backoff_s))


@dataclass
class CircuitBreaker:
    """Stops calling a backend after ``failure_threshold`` consecutive failed requests.

    While open, calls fail at once with :class:`BackendUnavailableError`; after ``reset_after_s``
    one trial call is let through (half-open) and its outcome closes or re-opens the circuit.
    One breaker per backend, shared by all queries to it, so a dead Prometheus costs one timeout
    per reset period instead of one per metric and service.
    """

    backend: str
    failure_threshold: int = 5
    reset_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _opened_at: float | None = field(default=None, init=False)

    @property
    def is_open(self) -> bool:
        """True while calls are refused (the reset period has not yet passed)."""
        return self._opened_at is not None and self.clock() - self._opened_at < self.reset_after_s

    def before_call(self, what: str) -> None:
        """Raise if the circuit is open; otherwise let the call proceed."""
        if self.is_open:
            assert self._opened_at is not None
            wait = self.reset_after_s - (self.clock() - self._opened_at)
            raise BackendUnavailableError(
                f"{self.backend}: circuit open after {self._failures} consecutive failures; "
                f"not sending {what} (next try in {wait:.0f}s)"
            )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self.failure_threshold:
            if self._opened_at is None or not self.is_open:
                logger.warning(
                    "%s: %d consecutive failures, pausing requests for %.0fs",
                    self.backend,
                    self._failures,
                    self.reset_after_s,
                )
            self._opened_at = self.clock()


def call_with_retries(
    request: Callable[[], T],
    *,
    backend: str,
    what: str,
    is_retryable: Callable[[BaseException], bool],
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``request``, retrying transient failures; raise :class:`BackendError` when it gives up.

    ``is_retryable`` decides per exception: connection errors and 5xx are worth another try, a
    4xx (bad query, bad token) is not and fails at once. ``what`` describes the request (the
    query, never credentials) for the error message.
    """
    policy = policy or RetryPolicy()
    last: BaseException | None = None
    for attempt in range(1, policy.attempts + 1):
        if breaker is not None:
            breaker.before_call(what)
        delay = policy.delay_before(attempt)
        if delay:
            sleep(delay)
        try:
            result = request()
        except BackendError:
            raise
        except Exception as exc:  # classified just below, re-raised as BackendError
            last = exc
            if not is_retryable(exc):
                # The backend answered (a bad query, a bad token): it is up, so this is no
                # reason to stop querying it for other services and metrics.
                if breaker is not None:
                    breaker.record_success()
                break
            if breaker is not None:
                breaker.record_failure()
            logger.info(
                "%s: %s failed (try %d of %d): %s", backend, what, attempt, policy.attempts, exc
            )
            continue
        if breaker is not None:
            breaker.record_success()
        return result
    assert last is not None
    raise BackendError(f"{backend}: {what} failed: {type(last).__name__}: {last}") from last
