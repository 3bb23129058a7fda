"""Send notifications to Alertmanager's v2 API and to a generic JSON webhook.

Both receivers make one HTTP POST per batch, with a timeout and a few quick retries through
:func:`~ml_monitoring_service.collectors.resilience.call_with_retries` (connection errors,
timeouts, 5xx, 408 and 429 are retried; other statuses are not). Anything still failing becomes a
:class:`DeliveryError` naming the receiver, its URL and the cause; the outbox keeps the
notification and tries again later. Only a rejection of the payload itself (400, 413, 422) is
``permanent``: sending the same bytes again cannot succeed, so the outbox sets it aside instead
of letting it block every later notification.

Webhook body (one notification per POST, ``Content-Type: application/json``, header
``Idempotency-Key: <id>``)::

    {"version": "1", "id": "<alert id>-<n>", "event": "firing" | "update" | "resolved",
     "status": "firing" | "resolved", "alert_id": "<alert id>",
     "labels": {...}, "annotations": {...}, "startsAt": "<ISO-8601>", "endsAt": "<ISO>" | null}

``id`` is unique per notification and identical on redelivery: a receiver that stores the ids it
has seen never acts twice (the outbox may resend after a crash between send and delete).
``alert_id`` ties a ``resolved`` to its ``firing``. ``update`` events (new annotations of an
active alert, once per tick) are only sent when ``include_updates`` is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from ml_monitoring_service.alerts.policy import Notification
from ml_monitoring_service.collectors.resilience import RetryPolicy, call_with_retries
from ml_monitoring_service.errors import BackendError

WEBHOOK_VERSION = "1"
_RETRY_STATUSES = frozenset({408, 429})
_PERMANENT_STATUSES = frozenset({400, 413, 422})


class DeliveryError(BackendError):
    """A receiver did not accept a batch; ``permanent`` when resending cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class HTTPStatusError(Exception):
    """The receiver answered with an error status; the body is kept because it says why."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300].strip()}")
        self.status = status


class Receiver(Protocol):
    """Where notifications go; the outbox sends its queue in order, ``batch_size`` at a time."""

    name: str
    batch_size: int

    def wants(self, notification: Notification) -> bool:
        """Whether this receiver gets the notification at all (decided when it is queued)."""
        ...

    def send(self, batch: Sequence[Notification]) -> None:
        """Deliver the batch or raise :class:`DeliveryError`."""
        ...


def is_retryable(exc: BaseException) -> bool:
    """Worth another immediate try: the network or an overloaded receiver, not a refusal."""
    if isinstance(exc, HTTPStatusError):
        return exc.status >= 500 or exc.status in _RETRY_STATUSES
    return isinstance(exc, (requests.ConnectionError, requests.Timeout))


class _HttpReceiver:
    """POST JSON with timeout and retries; subclasses build the body."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_s: float,
        retry: RetryPolicy | None,
        sleep: Callable[[float], None],
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: URL must start with http:// or https://, got {url!r}")
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy(attempts=3, backoff_s=0.5, max_backoff_s=2.0)
        self._sleep = sleep
        self._session = requests.Session()

    def _post(self, body: Any, what: str, headers: Mapping[str, str] | None = None) -> None:
        def request() -> None:
            response = self._session.post(
                self.url, json=body, timeout=self.timeout_s, headers=headers
            )
            if not response.ok:
                raise HTTPStatusError(response.status_code, response.text)

        try:
            call_with_retries(
                request,
                backend=f"{self.name} ({self.url})",
                what=what,
                is_retryable=is_retryable,
                policy=self.retry,
                sleep=self._sleep,
            )
        except BackendError as exc:
            cause = exc.__cause__
            permanent = isinstance(cause, HTTPStatusError) and cause.status in _PERMANENT_STATUSES
            raise DeliveryError(str(exc), permanent=permanent) from cause


class AlertmanagerReceiver(_HttpReceiver):
    """Posts to ``<base_url>/api/v2/alerts``; Alertmanager groups, routes and deduplicates.

    Firing alerts are posted with ``endsAt = now + ttl``: the policy re-posts active alerts every
    tick, and if the daemon stops doing so Alertmanager resolves them by itself after ``ttl``
    instead of keeping a stale page open. Choose ``ttl`` a few inference intervals long.
    Resolved alerts carry their real ``endsAt`` (in the past), which resolves them at once.
    Alertmanager identifies alerts by their label set, so a resend is merged, never duplicated.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "alertmanager",
        ttl: timedelta = timedelta(minutes=15),
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        batch_size: int = 64,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = base_url.rstrip("/") + "/api/v2/alerts"
        super().__init__(name, url, timeout_s=timeout_s, retry=retry, sleep=sleep)
        self.ttl = ttl
        self.batch_size = batch_size
        self._clock = clock

    def wants(self, notification: Notification) -> bool:
        """Every event, updates included: they keep the alert alive and its annotations fresh."""
        return True

    def send(self, batch: Sequence[Notification]) -> None:
        now = self._clock()
        body = [self._postable(n, now) for n in batch]
        self._post(body, f"POST /api/v2/alerts ({len(batch)} alerts)")

    def _postable(self, notification: Notification, now: datetime) -> dict[str, Any]:
        alert = notification.alert
        # max(): a window end ahead of this clock must not give an endsAt before startsAt.
        ends = alert.ends_at or max(now, alert.starts_at) + self.ttl
        return {
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": alert.starts_at.isoformat(),
            "endsAt": ends.isoformat(),
        }


class WebhookReceiver(_HttpReceiver):
    """Posts each notification as the JSON body documented in the module docstring."""

    batch_size = 1

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        include_updates: bool = False,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(name, url, timeout_s=timeout_s, retry=retry, sleep=sleep)
        self.include_updates = include_updates
        self.headers = dict(headers or {})

    def wants(self, notification: Notification) -> bool:
        """Firing and resolved always; per-tick updates only on request (they are chatty)."""
        return self.include_updates or notification.event != "update"

    def send(self, batch: Sequence[Notification]) -> None:
        for notification in batch:
            headers = {**self.headers, "Idempotency-Key": notification.id}
            what = f"POST {notification.event} notification {notification.id}"
            self._post(webhook_body(notification), what, headers)


def webhook_body(notification: Notification) -> dict[str, Any]:
    """The documented webhook payload for one notification."""
    alert = notification.alert.to_json()
    return {
        "version": WEBHOOK_VERSION,
        "id": notification.id,
        "event": notification.event,
        "status": notification.alert.status,
        "alert_id": alert.pop("id"),
        **alert,
    }
