"""The alert policy: k-of-n firing, deduplication, resolution, silences and their boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml_monitoring_service.alerts.policy import (
    AlertPolicy,
    AlertPolicyConfig,
    IncidentLink,
    Notification,
    WindowVerdict,
    verdicts_from_scores,
)
from ml_monitoring_service.detectors.base import ScoreResult
from ml_monitoring_service.errors import DataValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)


def windows(
    flags: str, first: int = 0, *, ratio: float = 3.0, service: str = "api", metric: str = "cpu"
) -> list[WindowVerdict]:
    """One verdict per character: ``x`` anomalous (score ``ratio`` × threshold 2), ``.`` normal.

    Window ``i`` ends at ``T0 + (first + i) * 30s``, so ticks can overlap by reusing ``first``.
    """
    return [
        WindowVerdict(
            end=T0 + (first + i) * STEP,
            score=2.0 * (ratio if flag == "x" else 0.5),
            threshold=2.0,
            service=service,
            metric=metric,
        )
        for i, flag in enumerate(flags)
    ]


def events(notifications: list[Notification]) -> list[str]:
    return [n.event for n in notifications]


def policy(**settings: object) -> AlertPolicy:
    defaults: dict[str, object] = {"fire_min_anomalous": 3, "window_count": 5}
    return AlertPolicy(AlertPolicyConfig.model_validate({**defaults, **settings}))


def test_fires_at_exactly_k_of_the_last_n_windows() -> None:
    assert policy().observe("shop", "event", windows(".x.x.")) == []
    fired = policy().observe("shop", "event", windows("x.x.x"))
    assert events(fired) == ["firing"]
    alert = fired[0].alert
    assert alert.starts_at == T0  # end of the oldest anomalous window among the n
    assert alert.ends_at is None and alert.status == "firing"
    assert alert.labels == {
        "alertname": "MLMonitoringAnomaly",
        "service_set": "shop",
        "alert_key": "event",
        "service": "api",
        "metric": "cpu",
        "severity": "critical",
    }
    assert alert.annotations["score"] == "6" and alert.annotations["threshold"] == "2"
    assert (
        "3 of the last 5 windows anomalous in service set 'shop' (event)"
        in (alert.annotations["summary"])
    )


def test_k_anomalous_windows_spread_wider_than_n_do_not_fire() -> None:
    tracker = policy()
    assert tracker.observe("shop", "event", windows("x...x")) == []
    assert tracker.observe("shop", "event", windows("...x", first=5)) == []  # x..x. x: 2 of 5


def test_a_long_tick_is_judged_window_by_window() -> None:
    """A burst in the middle of a tick fires and resolves even though the tick ends calm."""
    tracker = policy(resolve_max_anomalous=0)
    tracker.observe("shop", "event", windows("....."))
    notes = tracker.observe("shop", "event", windows("xxx.....", first=5))
    assert events(notes) == ["firing", "resolved"]
    assert notes[1].alert.ends_at == T0 + 12 * STEP  # the fifth calm window satisfied r = 0
    assert "Resolved at 2024-05-01 12:06:00 UTC" in notes[1].alert.annotations["summary"]
    assert tracker.active() == []


def test_active_alert_is_not_fired_again_but_updated() -> None:
    tracker = policy()
    fired = tracker.observe("shop", "event", windows("xxx"))
    update = tracker.observe("shop", "event", windows("xx", first=3, ratio=1.5, service="db"))
    assert events(update) == ["update"]
    assert update[0].alert.id == fired[0].alert.id
    assert update[0].id == f"{fired[0].alert.id}-1"
    assert update[0].alert.labels == fired[0].alert.labels  # identity fixed at firing
    assert update[0].alert.starts_at == fired[0].alert.starts_at
    assert "5 of the last 5" in update[0].alert.annotations["summary"]
    keepalive = tracker.observe("shop", "event", [])
    assert events(keepalive) == ["update"] and keepalive[0].id == f"{fired[0].alert.id}-2"


def test_overlapping_ticks_count_each_window_once() -> None:
    tracker = policy()
    assert tracker.observe("shop", "event", windows("..x.x")) == []
    # the next lookback re-scores windows 0-4; only window 5 is new: 2 of the last 5, not 4
    assert tracker.observe("shop", "event", windows("..x.x.")) == []
    assert events(tracker.observe("shop", "event", windows("..x.x.x"))) == ["firing"]


def test_first_tick_only_considers_the_newest_n_windows() -> None:
    """After a (re)start, an incident that ended within the lookback does not page."""
    assert policy().observe("shop", "event", windows("xxxxx.....")) == []


@pytest.mark.parametrize(
    ("resolve_max", "tail", "resolved"), [(1, "x.x..", False), (1, ".x...", True)]
)
def test_resolves_when_at_most_r_of_the_last_n_are_anomalous(
    resolve_max: int, tail: str, resolved: bool
) -> None:
    tracker = policy(resolve_max_anomalous=resolve_max)
    tracker.observe("shop", "event", windows("xxxxx"))
    notes = tracker.observe("shop", "event", windows(tail, first=5))
    assert events(notes) == (["resolved"] if resolved else ["update"])


def test_refiring_after_resolution_is_a_new_alert() -> None:
    tracker = policy(window_count=3, fire_min_anomalous=2)
    first = tracker.observe("shop", "event", windows("xx"))[0].alert
    notes = tracker.observe("shop", "event", windows("...xx", first=2))
    assert events(notes) == ["resolved", "firing"]
    assert notes[0].alert.id == first.id
    assert notes[1].alert.id != first.id and notes[1].id.endswith("-0")


def test_tracks_are_independent_per_set_and_key() -> None:
    tracker = policy()
    assert events(tracker.observe("shop", "event", windows("xxx"))) == ["firing"]
    assert tracker.observe("shop", "grid_30s", windows("..x")) == []
    assert tracker.observe("billing", "event", windows("...")) == []
    assert [a.labels["alert_key"] for a in tracker.active()] == ["event"]


def test_nothing_fires_from_windows_inside_a_silence() -> None:
    silence = [T0 + 2 * STEP, T0 + 5 * STEP]  # windows 2, 3, 4 (end exclusive)
    tracker = policy(silences=[silence])
    assert tracker.observe("shop", "event", windows("..xxx")) == []
    notes = tracker.observe("shop", "event", windows("x", first=5))  # window 5: after the silence
    assert notes == []  # the silenced windows were ignored, so only 1 anomalous counts


def test_active_alert_survives_a_silence_and_is_decided_after_it() -> None:
    silence = (T0 + 5 * STEP, T0 + 10 * STEP)
    tracker = policy(silences=[silence])
    alert = tracker.observe("shop", "event", windows("xxxxx"))[0].alert
    during = tracker.observe("shop", "event", windows(".....", first=5))
    assert events(during) == ["update"] and tracker.active()[0].id == alert.id
    after = tracker.observe("shop", "event", windows(".....", first=10))
    assert events(after) == ["resolved"]
    assert after[0].alert.ends_at == T0 + 14 * STEP


def test_severity_is_critical_from_the_configured_ratio() -> None:
    at_ratio = policy(critical_ratio=2.5).observe("s", "k", windows("xxx", ratio=2.5))
    below = policy(critical_ratio=2.5).observe("s", "k", windows("xxx", ratio=2.4))
    assert at_ratio[0].alert.labels["severity"] == "critical"
    assert below[0].alert.labels["severity"] == "warning"


def test_a_window_at_the_threshold_is_not_anomalous() -> None:
    assert policy().observe("s", "k", windows("xxxxx", ratio=1.0)) == []


def test_same_input_gives_same_ids_and_state_survives_a_restart() -> None:
    first, second = policy(), policy()
    notes = first.observe("shop", "event", windows("xxx"))
    assert notes == second.observe("shop", "event", windows("xxx"))
    restored = AlertPolicy(first.config, state=first.export_state())
    later = windows("..x..", first=3)
    assert restored.observe("shop", "event", later) == first.observe("shop", "event", later)
    assert restored.export_state() == first.export_state()


def test_state_of_another_version_is_rejected() -> None:
    with pytest.raises(DataValidationError, match="state version 99"):
        AlertPolicy(AlertPolicyConfig(), state={"version": 99, "tracks": []})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fire_min_anomalous": 6, "window_count": 5}, "could never fire"),
        ({"fire_min_anomalous": 2, "resolve_max_anomalous": 2}, "would flap"),
        ({"silences": [["2024-05-01T10:00", "2024-05-01T09:00"]]}, "is not before end"),
        ({"fire_after": 3}, "fire_after"),
        ({"alertname": "ml anomaly"}, "alertname"),
    ],
)
def test_config_errors_name_the_problem(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertPolicyConfig.model_validate(settings)


def test_naive_silences_are_utc() -> None:
    config = AlertPolicyConfig.model_validate(
        {"silences": [["2024-05-01T10:00", "2024-05-01T13:00+02:00"]]}
    )
    start, end = datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert config.silences == ((start, end),)
    assert config.is_silenced(start) and config.is_silenced(end - timedelta(seconds=1))
    assert not config.is_silenced(end)


def test_verdicts_are_validated() -> None:
    with pytest.raises(DataValidationError, match="no time zone"):
        WindowVerdict(datetime(2024, 5, 1), 1.0, 2.0, "api", "cpu")
    with pytest.raises(DataValidationError, match="must be finite"):
        WindowVerdict(T0, float("nan"), 2.0, "api", "cpu")


def test_verdicts_from_scores_blame_the_top_service_and_its_top_metric() -> None:
    ends = pd.date_range(T0, periods=2, freq="30s")
    metric_scores = np.array([[[1.0, 9.0], [2.0, 0.5]], [[0.1, 0.2], [4.0, 3.0]]])
    result = ScoreResult(
        window_scores=np.array([5.0, 1.0]),
        service_scores=metric_scores.max(axis=2),
        metric_scores=metric_scores,
        starts=ends - pd.Timedelta("5min"),
        ends=ends,
        services=("api", "db"),
        features=("cpu", "latency"),
        threshold=2.0,
    )
    verdicts = verdicts_from_scores(result)
    assert [(v.service, v.metric, v.anomalous) for v in verdicts] == [
        ("api", "latency", True),
        ("db", "cpu", False),
    ]
    assert verdicts[1].end == T0 + STEP


def test_annotation_links_the_incident_of_the_newest_anomalous_window() -> None:
    earlier = IncidentLink(T0 - 10 * STEP, T0 - STEP, "incidents/earlier.md")
    current = IncidentLink(T0, T0 + 3 * STEP, "incidents/current.md")
    track = policy()
    fired = track.observe("shop", "event", windows("xxxx."), incidents=[earlier, current])
    assert fired[0].alert.annotations["incident_report"] == "incidents/current.md"
    # the recovered windows belong to no period: the alert keeps the report it links to
    resolved = track.observe("shop", "event", windows(".....", 5), incidents=[earlier])
    assert events(resolved) == ["resolved"]
    assert resolved[0].alert.annotations["incident_report"] == "incidents/current.md"
    assert (
        "incident_report" not in policy().observe("shop", "e", windows("xxx"))[0].alert.annotations
    )
