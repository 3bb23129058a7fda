"""Alert policy: turns per-window verdicts into fire / update / resolve notifications.

The threshold says whether one window is anomalous; this policy says when that is worth waking
someone. It is a separate object (style note 2) so the threshold can be recalibrated, and the
paging rules changed, without touching the other. Pure logic: no clock, no I/O, the same
verdicts always give the same notifications with the same ids.

Rules, per (service set, alert key) track; the key is typically the variant (``event``):

* Windows are processed in time order, each once (a tick's lookback overlaps the previous
  tick's, so windows ending at or before the newest one already seen are skipped). On a track's
  first tick only the newest ``window_count`` windows count, so a (re)start does not page for
  incidents that are already over.
* **Fire** when at least ``fire_min_anomalous`` (k) of the last ``window_count`` (n) windows are
  anomalous. ``startsAt`` is the end of the oldest anomalous window among those n.
* While active, never fire again; instead every tick emits one ``update`` with fresh annotations
  (this is also Alertmanager's keep-alive).
* **Resolve** when the last n windows hold at most ``resolve_max_anomalous`` (r < k) anomalous
  ones; ``endsAt`` is the end of the window that satisfied the rule. r < k gives hysteresis: an
  alert that just fired cannot resolve on the next window.
* **Silences** (maintenance windows, UTC ``[start, end)``): windows ending inside one are
  ignored entirely. So nothing fires from maintenance noise, and an alert that was active when
  the silence began is neither resolved nor re-fired by it: it stays active (and kept alive),
  and the windows after the silence decide.
* **Severity** is ``critical`` when the worst window's score is at least ``critical_ratio`` ×
  its threshold, else ``warning``. Labels (severity, service, metric included) are fixed when an
  alert fires, because Alertmanager identifies an alert by its labels; annotations carry the
  current worst score, threshold and top service/metric, and ``incident_report``: the report of
  the anomalous period (see :class:`IncidentLink`) that holds the newest anomalous window.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ml_monitoring_service.errors import DataValidationError

if TYPE_CHECKING:  # only the type: importing the detectors would pull in torch
    from ml_monitoring_service.detectors.base import ScoreResult

STATE_VERSION = 1
Event = Literal["firing", "update", "resolved"]


def _as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (config files rarely spell the zone); others converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_silence(value: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    start, end = (_as_utc(t) for t in value)
    if start >= end:
        raise ValueError(f"silence start {start.isoformat()} is not before end {end.isoformat()}")
    return start, end


Silence = Annotated[tuple[datetime, datetime], AfterValidator(_check_silence)]


class AlertPolicyConfig(BaseModel):
    """When anomalous windows become an alert; see the module docstring for the exact rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fire_min_anomalous: int = Field(3, ge=1)
    window_count: int = Field(5, ge=1)
    resolve_max_anomalous: int = Field(0, ge=0)
    critical_ratio: float = Field(2.0, gt=1.0)
    alertname: str = Field("MLMonitoringAnomaly", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    silences: tuple[Silence, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AlertPolicyConfig:
        if self.fire_min_anomalous > self.window_count:
            raise ValueError(
                f"fire_min_anomalous ({self.fire_min_anomalous}) exceeds "
                f"window_count ({self.window_count}): the alert could never fire"
            )
        if self.resolve_max_anomalous >= self.fire_min_anomalous:
            raise ValueError(
                f"resolve_max_anomalous ({self.resolve_max_anomalous}) must be below "
                f"fire_min_anomalous ({self.fire_min_anomalous}), or alerts would flap"
            )
        return self

    def is_silenced(self, moment: datetime) -> bool:
        """True when ``moment`` lies in a configured silence (start inclusive, end exclusive)."""
        return any(start <= moment < end for start, end in self.silences)


@dataclass(frozen=True)
class WindowVerdict:
    """One scored window: its end time, score, threshold and the channel that scored highest."""

    end: datetime
    score: float
    threshold: float
    service: str
    metric: str

    def __post_init__(self) -> None:
        if self.end.tzinfo is None:
            raise DataValidationError(f"window end {self.end.isoformat()} has no time zone")
        object.__setattr__(self, "end", _as_utc(self.end))
        if not math.isfinite(self.score) or not math.isfinite(self.threshold):
            raise DataValidationError(
                f"window ending {self.end.isoformat()}: score {self.score} and threshold "
                f"{self.threshold} must be finite"
            )
        if self.threshold <= 0:
            raise DataValidationError(f"threshold must be positive, got {self.threshold}")

    @property
    def anomalous(self) -> bool:
        """Same rule as ``ScoreResult.is_anomalous``: score strictly above the threshold."""
        return self.score > self.threshold

    @property
    def ratio(self) -> float:
        """Score / threshold: comparable across model versions with different thresholds."""
        return self.score / self.threshold

    def to_json(self) -> dict[str, Any]:
        return {
            "end": self.end.isoformat(),
            "score": self.score,
            "threshold": self.threshold,
            "service": self.service,
            "metric": self.metric,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowVerdict:
        return cls(**{**data, "end": datetime.fromisoformat(data["end"])})


def verdicts_from_scores(result: ScoreResult) -> list[WindowVerdict]:
    """One verdict per scored window, blamed on its highest service and that service's metric."""
    services = np.argmax(result.service_scores, axis=1)
    # Python datetimes stop at microseconds; event-variant window ends carry nanoseconds.
    ends = result.ends.floor("us").to_pydatetime()
    verdicts = []
    for i, s in enumerate(services):
        metric = int(np.argmax(result.metric_scores[i, s]))
        verdicts.append(
            WindowVerdict(
                end=ends[i],
                score=float(result.window_scores[i]),
                threshold=float(result.threshold),
                service=result.services[int(s)],
                metric=result.features[metric],
            )
        )
    return verdicts


@dataclass(frozen=True)
class IncidentLink:
    """Where the incident report of one anomalous period is: windows ending in
    ``[start, end]`` belong to it."""

    start: datetime
    end: datetime
    report: str

    def holds(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end


@dataclass(frozen=True)
class Alert:
    """An alert as Alertmanager sees it; ``id`` is stable for one firing-to-resolved episode."""

    id: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None = None

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.ends_at is None else "resolved"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.isoformat(),
            "endsAt": None if self.ends_at is None else self.ends_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        ends = data["endsAt"]
        return cls(
            id=data["id"],
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            starts_at=datetime.fromisoformat(data["startsAt"]),
            ends_at=None if ends is None else datetime.fromisoformat(ends),
        )


@dataclass(frozen=True)
class Notification:
    """One change to send: ``id`` (``<alert id>-<n>``) is the receivers' deduplication key."""

    id: str
    event: Event
    alert: Alert

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "event": self.event, "alert": self.alert.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        return cls(id=data["id"], event=data["event"], alert=Alert.from_json(data["alert"]))


@dataclass
class _Track:
    """State of one (service set, key): the last n counted windows and the active alert."""

    recent: deque[WindowVerdict]
    last_end: datetime | None = None
    alert: Alert | None = None
    sent: int = 0  # notifications emitted for ``alert``, numbers the next id


class AlertPolicy:
    """Per-track k-of-n state machine; feed it once per inference tick with :meth:`observe`."""

    def __init__(self, config: AlertPolicyConfig, state: dict[str, Any] | None = None) -> None:
        self.config = config
        self._tracks: dict[tuple[str, str], _Track] = {}
        if state is not None:
            self._restore(state)

    def observe(
        self,
        service_set: str,
        key: str,
        verdicts: Iterable[WindowVerdict],
        *,
        report: str = "",
        incidents: Sequence[IncidentLink] = (),
    ) -> list[Notification]:
        """Process the tick's windows; return the notifications to send, oldest first.

        ``report`` (a link or path to the run's outputs) goes into the alert's annotations, and
        so does the report of the incident among ``incidents`` that the alert belongs to.
        """
        track = self._tracks.get((service_set, key))
        if track is None:
            track = _Track(deque(maxlen=self.config.window_count))
            self._tracks[(service_set, key)] = track
        context = _Context(service_set, key, report, tuple(incidents))
        out: list[Notification] = []
        for verdict in self._fresh(track, verdicts):
            track.last_end = verdict.end
            if self.config.is_silenced(verdict.end):
                continue
            track.recent.append(verdict)
            out.extend(self._step(track, context, verdict))
        if track.alert is not None and not (out and out[-1].event == "firing"):
            annotations = self._annotations(track, context, track.alert.starts_at)
            track.alert = _replace_annotations(track.alert, annotations)
            out.append(self._emit(track, "update", track.alert))
        return out

    def active(self) -> list[Alert]:
        """Alerts currently firing, in track order."""
        return [t.alert for t in self._tracks.values() if t.alert is not None]

    def export_state(self) -> dict[str, Any]:
        """JSON-ready state; pass it back to the constructor after a restart."""
        return {
            "version": STATE_VERSION,
            "tracks": [
                {
                    "service_set": service_set,
                    "key": key,
                    "recent": [v.to_json() for v in track.recent],
                    "last_end": None if track.last_end is None else track.last_end.isoformat(),
                    "alert": None if track.alert is None else track.alert.to_json(),
                    "sent": track.sent,
                }
                for (service_set, key), track in self._tracks.items()
            ],
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise DataValidationError(
                f"alert policy state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        for item in state["tracks"]:
            recent = (WindowVerdict.from_json(v) for v in item["recent"])
            last_end = item["last_end"]
            self._tracks[(item["service_set"], item["key"])] = _Track(
                recent=deque(recent, maxlen=self.config.window_count),
                last_end=None if last_end is None else datetime.fromisoformat(last_end),
                alert=None if item["alert"] is None else Alert.from_json(item["alert"]),
                sent=int(item["sent"]),
            )

    def _fresh(self, track: _Track, verdicts: Iterable[WindowVerdict]) -> list[WindowVerdict]:
        """Windows newer than any seen before, in time order (the last of equal ends wins)."""
        by_end = {v.end: v for v in verdicts}
        fresh = [by_end[end] for end in sorted(by_end)]
        if track.last_end is None:
            return fresh[-self.config.window_count :]
        return [v for v in fresh if v.end > track.last_end]

    def _step(self, track: _Track, context: _Context, verdict: WindowVerdict) -> list[Notification]:
        count = sum(w.anomalous for w in track.recent)
        if track.alert is None and count >= self.config.fire_min_anomalous:
            track.alert, track.sent = self._new_alert(track, context), 0
            return [self._emit(track, "firing", track.alert)]
        if track.alert is not None and count <= self.config.resolve_max_anomalous:
            since = track.alert.starts_at
            annotations = self._annotations(track, context, since, resolved_at=verdict.end)
            resolved = _replace_annotations(track.alert, annotations, ends_at=verdict.end)
            track.alert = None
            return [self._emit(track, "resolved", resolved)]
        return []

    def _new_alert(self, track: _Track, context: _Context) -> Alert:
        worst = max((w for w in track.recent if w.anomalous), key=lambda w: w.ratio)
        since = min(w.end for w in track.recent if w.anomalous)
        severity = "critical" if worst.ratio >= self.config.critical_ratio else "warning"
        labels = {
            "alertname": self.config.alertname,
            "service_set": context.service_set,
            "alert_key": context.key,
            "service": worst.service,
            "metric": worst.metric,
            "severity": severity,
        }
        identity = json.dumps([sorted(labels.items()), since.isoformat()])
        alert_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
        draft = Alert(alert_id, labels, {}, since)
        return _replace_annotations(draft, self._annotations(track, context, since))

    def _annotations(
        self,
        track: _Track,
        context: _Context,
        since: datetime,
        *,
        resolved_at: datetime | None = None,
    ) -> dict[str, str]:
        """Current worst window, a one-line human summary and the report link.

        Only called for an alert, so ``track.recent`` holds at least the k windows that fired it.
        """
        worst = max(track.recent, key=lambda w: w.ratio)
        count = sum(w.anomalous for w in track.recent)
        where = f"service set '{context.service_set}' ({context.key})"
        summary = (
            f"{count} of the last {len(track.recent)} windows anomalous in {where} "
            f"since {_short(since)}; worst {worst.service}/{worst.metric} "
            f"score {worst.score:.3g} = {worst.ratio:.1f}x threshold {worst.threshold:.3g}"
        )
        if resolved_at is not None:
            summary = f"Resolved at {_short(resolved_at)}: {summary}"
        annotations = {
            "score": f"{worst.score:.6g}",
            "threshold": f"{worst.threshold:.6g}",
            "summary": summary,
            "report": context.report,
        }
        incident = _incident_report(track, context)
        if incident:
            annotations["incident_report"] = incident
        return annotations

    @staticmethod
    def _emit(track: _Track, event: Event, alert: Alert) -> Notification:
        """Number the notification (``<alert id>-<n>``, deterministic, so replays dedupe)."""
        notification = Notification(f"{alert.id}-{track.sent}", event, alert)
        track.sent += 1
        return notification


@dataclass(frozen=True)
class _Context:
    service_set: str
    key: str
    report: str
    incidents: tuple[IncidentLink, ...] = ()


def _incident_report(track: _Track, context: _Context) -> str:
    """Report of the period holding the newest anomalous window of ``track.recent``.

    When no period holds one (e.g. at resolve time, when the recent windows are normal), the
    alert keeps the report it already links to.
    """
    anomalous = [w.end for w in track.recent if w.anomalous]
    if anomalous:
        newest = max(anomalous)
        for link in context.incidents:
            if link.holds(newest):
                return link.report
    return "" if track.alert is None else track.alert.annotations.get("incident_report", "")


def _replace_annotations(
    alert: Alert, annotations: dict[str, str], ends_at: datetime | None = None
) -> Alert:
    return Alert(alert.id, alert.labels, annotations, alert.starts_at, ends_at)


def _short(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
