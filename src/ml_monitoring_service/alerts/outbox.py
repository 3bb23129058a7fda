"""On-disk outbox: every notification is written to disk first, then delivered.

A receiver outage, or a daemon restart during one, must not lose an alert. Layout::

    <directory>/<receiver>/<seq>-<notification id>.json        queued, oldest = lowest seq
    <directory>/<receiver>/dead/<seq>-<notification id>.json   rejected as invalid; kept to inspect

One plain JSON file per (notification, receiver), written to a temporary name, fsynced and
renamed, so a crash leaves either the whole file or none, and an operator can ``ls`` and ``cat``
what is stuck. Delivery per receiver is strictly in queue order and stops at the first failure,
so a resolve never overtakes its firing; failed receivers are retried on a later :meth:`flush`
after an exponential backoff (in memory: after a restart the first flush tries at once).
Delivered files are deleted after the receiver accepted them. A crash between the two resends
the notification: Alertmanager merges an identical label set, and webhook receivers deduplicate
on the notification ``id`` (see :mod:`~ml_monitoring_service.alerts.delivery`). :meth:`put`
skips a notification already queued for a receiver, so replaying a tick after a crash does not
queue it twice. One process owns a directory; the locks only order threads within it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml_monitoring_service.alerts.delivery import DeliveryError, Receiver
from ml_monitoring_service.alerts.policy import Notification

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENTRY = re.compile(r"^(\d{12})-(.+)\.json$")


@dataclass(frozen=True)
class FlushResult:
    """What one flush did: delivered and set-aside counts, what is still queued, and why."""

    delivered: int
    dead_lettered: int
    pending: int
    errors: tuple[str, ...]


@dataclass
class _Backoff:
    failures: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True)
class _Entry:
    path: Path
    notification: Notification


class Outbox:
    """Durable per-receiver queues in ``directory``; call :meth:`put`, then :meth:`flush`."""

    def __init__(
        self,
        directory: Path,
        receivers: Sequence[Receiver],
        *,
        backoff_s: float = 30.0,
        max_backoff_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [r.name for r in receivers]
        bad = [n for n in names if not _NAME.match(n)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique and [A-Za-z0-9_.-]+, got {names}")
        self.directory = directory
        self.receivers = tuple(receivers)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._clock = clock
        self._backoff = {name: _Backoff() for name in names}
        self._put_lock, self._flush_lock = threading.Lock(), threading.Lock()
        for name in names:
            (directory / name / "dead").mkdir(parents=True, exist_ok=True)
            for stale in (directory / name).rglob(".*.tmp"):
                stale.unlink()  # a write interrupted by a crash; its notification was never queued
        self._next_seq = 1 + max((_seq(p) for p in directory.glob("*/**/*.json")), default=0)

    def put(self, notifications: Iterable[Notification]) -> int:
        """Queue each notification for every receiver that wants it; return files written."""
        notifications = list(notifications)
        written = 0
        with self._put_lock:
            for receiver in self.receivers:
                queued = {_entry_id(p) for p in self._files(receiver.name)}
                for notification in notifications:
                    if receiver.wants(notification) and notification.id not in queued:
                        self._write(receiver.name, notification)
                        queued.add(notification.id)
                        written += 1
        return written

    def flush(self) -> FlushResult:
        """Deliver what is queued, oldest first, to every receiver not in backoff."""
        delivered = dead = 0
        errors: list[str] = []
        with self._flush_lock:
            for receiver in self.receivers:
                backoff = self._backoff[receiver.name]
                if self._clock() < backoff.retry_at:
                    continue
                sent, rejected, error = self._flush_receiver(receiver)
                delivered, dead = delivered + sent, dead + rejected
                if error is None:
                    backoff.failures = 0
                else:
                    errors.append(error)
                    self._back_off(receiver.name, error)
        pending = sum(len(self._files(r.name)) for r in self.receivers)
        return FlushResult(delivered, dead, pending, tuple(errors))

    def pending(self, receiver: str) -> list[Notification]:
        """Notifications queued for ``receiver``, in delivery order."""
        return [entry.notification for entry in self._load(receiver)]

    def _flush_receiver(self, receiver: Receiver) -> tuple[int, int, str | None]:
        """Send batches until the queue is empty or a send fails; return counts and error."""
        entries = self._load(receiver.name)
        sent = rejected = 0
        while entries:
            batch = _next_batch(entries, receiver.batch_size)
            try:
                receiver.send([entry.notification for entry in batch])
            except DeliveryError as exc:
                if not exc.permanent:
                    return sent, rejected, str(exc)
                self._set_aside(receiver.name, batch, str(exc))
                rejected += len(batch)
            else:
                for entry in batch:
                    entry.path.unlink(missing_ok=True)
                sent += len(batch)
            entries = entries[len(batch) :]
        return sent, rejected, None

    def _back_off(self, name: str, error: str) -> None:
        backoff = self._backoff[name]
        backoff.failures += 1
        delay = min(self.backoff_s * 2 ** (backoff.failures - 1), self.max_backoff_s)
        backoff.retry_at = self._clock() + delay
        queued = len(self._files(name))
        logger.warning("%s; %d notifications stay queued, next try in %.0fs", error, queued, delay)

    def _files(self, name: str) -> list[Path]:
        return sorted(p for p in (self.directory / name).glob("*.json") if _ENTRY.match(p.name))

    def _load(self, name: str) -> list[_Entry]:
        """Parse the queue; a file that cannot be read is set aside rather than block it."""
        entries = []
        for path in self._files(name):
            text = path.read_text(encoding="utf-8", errors="replace")
            try:
                notification = Notification.from_json(json.loads(text)["notification"])
            except (ValueError, KeyError, TypeError) as exc:
                error = f"{name}: unreadable outbox file {path.name}: {exc}"
                _move_to_dead(path, {"raw": text}, error)
            else:
                entries.append(_Entry(path, notification))
        return entries

    def _write(self, name: str, notification: Notification) -> None:
        path = self.directory / name / f"{self._next_seq:012d}-{notification.id}.json"
        self._next_seq += 1
        record = {
            "receiver": name,
            "queued_at": datetime.now(UTC).isoformat(),
            "notification": notification.to_json(),
        }
        _write_atomically(path, record)

    def _set_aside(self, name: str, batch: Sequence[_Entry], error: str) -> None:
        for entry in batch:
            record = {"receiver": name, "notification": entry.notification.to_json()}
            _move_to_dead(entry.path, record, error)


def _next_batch(entries: Sequence[_Entry], size: int) -> list[_Entry]:
    """The longest prefix of at most ``size`` entries with no alert twice.

    Two changes to one alert never share a request, so the receiver sees them in order.
    """
    batch: list[_Entry] = []
    alerts: set[str] = set()
    for entry in entries[:size]:
        if entry.notification.alert.id in alerts:
            break
        alerts.add(entry.notification.alert.id)
        batch.append(entry)
    return batch


def _move_to_dead(path: Path, record: dict[str, Any], error: str) -> None:
    logger.error("%s; set aside in %s", error, path.parent / "dead")
    _write_atomically(path.parent / "dead" / path.name, {**record, "error": error})
    path.unlink(missing_ok=True)


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    """Temporary file, fsync, rename, fsync the directory: all or nothing across a crash."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _seq(path: Path) -> int:
    match = _ENTRY.match(path.name)
    return int(match.group(1)) if match else 0


def _entry_id(path: Path) -> str:
    match = _ENTRY.match(path.name)
    return match.group(2) if match else ""
