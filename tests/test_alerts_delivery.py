"""Delivery through the outbox to a real Alertmanager and to a JSON webhook.

Alertmanager tests run the real binary (see ``standins/alertmanager_server.py``): the daemon side
posts, Alertmanager groups and routes, and a recording webhook shows what an on-call engineer's
integration would receive.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ml_monitoring_service.alerts import (
    Alert,
    AlertmanagerReceiver,
    AlertPolicy,
    AlertPolicyConfig,
    DeliveryError,
    Notification,
    Outbox,
    WebhookReceiver,
    WindowVerdict,
)
from ml_monitoring_service.collectors.resilience import RetryPolicy
from standins.alertmanager_server import (
    RecordingWebhook,
    free_port,
    running_alertmanager,
    wait_until,
)

NO_WAIT = RetryPolicy(attempts=2, backoff_s=0.0)


def verdicts(anomalous: bool, service: str, end: datetime) -> list[WindowVerdict]:
    """Three windows ending at ``end`` (the last) every 100 ms, all (not) anomalous."""
    score = 9.0 if anomalous else 0.5
    step = timedelta(milliseconds=100)
    return [WindowVerdict(end - i * step, score, 2.0, service, "latency") for i in range(3)]


def two_alerts(policy: AlertPolicy, anomalous: bool) -> list[Notification]:
    """One tick of two tracks (variants) of the set ``shop``: both fire, or both resolve."""
    now = datetime.now(UTC)
    return policy.observe("shop", "event", verdicts(anomalous, "api", now)) + policy.observe(
        "shop", "grid_30s", verdicts(anomalous, "db", now)
    )


def new_policy() -> AlertPolicy:
    return AlertPolicy(AlertPolicyConfig(fire_min_anomalous=2, window_count=3))


def alerts_by_status(bodies: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """How often Alertmanager notified each (status, alert key)."""
    return Counter(
        (alert["status"], alert["labels"]["alert_key"])
        for body in bodies
        for alert in body["alerts"]
    )


def test_two_alerts_of_one_set_arrive_grouped_then_resolved(tmp_path: Path) -> None:
    with RecordingWebhook() as hook, running_alertmanager(tmp_path, hook.url) as base_url:
        outbox = Outbox(tmp_path / "outbox", [AlertmanagerReceiver(base_url, retry=NO_WAIT)])
        policy = new_policy()
        assert outbox.put(two_alerts(policy, anomalous=True)) == 2
        assert outbox.flush().delivered == 2
        wait_until(lambda: len(hook.received) >= 1, 10, "the firing notification")

        assert outbox.put(two_alerts(policy, anomalous=False)) == 2
        assert outbox.flush().delivered == 2
        wait_until(lambda: len(hook.received) >= 2, 10, "the resolved notification")

    firing, resolved = hook.bodies()
    assert firing["status"] == "firing" and resolved["status"] == "resolved"
    assert firing["groupLabels"] == {"alertname": "MLMonitoringAnomaly", "service_set": "shop"}
    assert {a["labels"]["service"] for a in firing["alerts"]} == {"api", "db"}
    assert all(float(a["annotations"]["score"]) == 9.0 for a in firing["alerts"])
    assert alerts_by_status(hook.bodies()) == {
        ("firing", "event"): 1,
        ("firing", "grid_30s"): 1,
        ("resolved", "event"): 1,
        ("resolved", "grid_30s"): 1,
    }
    assert len(hook.received) == 2


def test_alerts_survive_an_outage_and_arrive_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    receiver = AlertmanagerReceiver(f"http://127.0.0.1:{port}", retry=NO_WAIT, timeout_s=2)
    policy = new_policy()
    queue = tmp_path / "outbox"
    outbox = Outbox(queue, [receiver])
    outbox.put(two_alerts(policy, anomalous=True))
    down = outbox.flush()
    assert (down.delivered, down.pending) == (0, 2)
    assert f"alertmanager (http://127.0.0.1:{port}/api/v2/alerts)" in down.errors[0]
    assert "ConnectionError" in down.errors[0]

    with RecordingWebhook() as hook, running_alertmanager(tmp_path, hook.url, port):
        restarted = Outbox(queue, [receiver])  # a new process finds the queue on disk
        files = {path: path.read_bytes() for path in (queue / "alertmanager").glob("*.json")}
        assert restarted.flush().delivered == 2
        assert restarted.pending("alertmanager") == []
        wait_until(lambda: len(hook.received) >= 1, 10, "the firing notification")

        # a crash between send and delete: the same files are sent again after a restart
        for path, content in files.items():
            path.write_bytes(content)
        assert Outbox(queue, [receiver]).flush().delivered == 2

        restarted.put(two_alerts(policy, anomalous=False))
        assert restarted.flush().delivered == 2
        wait_until(lambda: len(hook.received) >= 2, 10, "the resolved notification")

    assert alerts_by_status(hook.bodies()) == {
        ("firing", "event"): 1,
        ("firing", "grid_30s"): 1,
        ("resolved", "event"): 1,
        ("resolved", "grid_30s"): 1,
    }
    assert list(queue.glob("alertmanager/*.json")) == []


def test_alertmanager_rejection_is_permanent_and_set_aside(tmp_path: Path) -> None:
    invalid = Notification(
        "bad-0", "firing", Alert("bad", {"bad-label": "x"}, {}, datetime.now(UTC))
    )
    with RecordingWebhook() as hook, running_alertmanager(tmp_path, hook.url) as base_url:
        receiver = AlertmanagerReceiver(base_url, retry=NO_WAIT)
        with pytest.raises(DeliveryError) as info:
            receiver.send([invalid])
        assert info.value.permanent
        outbox = Outbox(tmp_path / "outbox", [receiver])
        outbox.put([invalid])
        assert outbox.flush().dead_lettered == 1
    assert "HTTP 400" in str(info.value) and "bad-label" in str(info.value)
    assert len(list((tmp_path / "outbox" / "alertmanager" / "dead").glob("*.json"))) == 1


@pytest.fixture
def hook() -> Iterator[RecordingWebhook]:
    with RecordingWebhook() as server:
        yield server


def fired_then_resolved() -> list[Notification]:
    policy = new_policy()
    now = datetime.now(UTC)
    notes = policy.observe("shop", "event", verdicts(True, "api", now))
    notes += policy.observe("shop", "event", verdicts(True, "api", now + timedelta(seconds=1)))
    return notes + policy.observe(
        "shop", "event", verdicts(False, "api", now + timedelta(seconds=2))
    )


def test_webhook_gets_the_documented_body_with_an_idempotency_key(
    hook: RecordingWebhook, tmp_path: Path
) -> None:
    notes = fired_then_resolved()
    assert [n.event for n in notes] == ["firing", "update", "resolved"]
    outbox = Outbox(tmp_path, [WebhookReceiver(hook.url, retry=NO_WAIT)])
    assert outbox.put(notes) == 2  # updates are not sent to webhooks by default
    assert outbox.flush().delivered == 2

    firing, resolved = hook.bodies()
    alert_id = notes[0].alert.id
    assert firing == {
        "version": "1",
        "id": f"{alert_id}-0",
        "event": "firing",
        "status": "firing",
        "alert_id": alert_id,
        "labels": notes[0].alert.labels,
        "annotations": notes[0].alert.annotations,
        "startsAt": notes[0].alert.starts_at.isoformat(),
        "endsAt": None,
    }
    assert resolved["id"] == f"{alert_id}-2" and resolved["status"] == "resolved"
    ends_at = notes[2].alert.ends_at
    assert ends_at is not None and resolved["endsAt"] == ends_at.isoformat()
    assert hook.received[0].headers["Idempotency-Key"] == f"{alert_id}-0"


def test_outage_keeps_order_and_backs_off(hook: RecordingWebhook, tmp_path: Path) -> None:
    now = [0.0]
    receiver = WebhookReceiver(hook.url, include_updates=True, retry=NO_WAIT)
    outbox = Outbox(tmp_path, [receiver], backoff_s=10, clock=lambda: now[0])
    outbox.put(fired_then_resolved())
    hook.statuses = [503, 503]  # both tries of the first send
    failed = outbox.flush()
    assert (failed.delivered, failed.pending) == (0, 3)
    assert "webhook (" in failed.errors[0] and "HTTP 503" in failed.errors[0]

    assert outbox.flush() == type(failed)(0, 0, 3, ())  # in backoff: nothing sent
    now[0] = 10.0
    assert outbox.flush().delivered == 3
    assert [body["event"] for body in hook.bodies()] == ["firing", "update", "resolved"]


def test_a_retryable_blip_is_retried_within_one_flush(
    hook: RecordingWebhook, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path, [WebhookReceiver(hook.url, retry=NO_WAIT)])
    outbox.put(fired_then_resolved())
    hook.statuses = [500]
    assert outbox.flush().delivered == 2
    assert [body["event"] for body in hook.bodies()] == ["firing", "resolved"]


def test_a_rejected_notification_does_not_block_the_queue(
    hook: RecordingWebhook, tmp_path: Path
) -> None:
    outbox = Outbox(tmp_path, [WebhookReceiver(hook.url, retry=NO_WAIT)])
    outbox.put(fired_then_resolved())
    hook.statuses = [422]
    result = outbox.flush()
    assert (result.delivered, result.dead_lettered, result.pending) == (1, 1, 0)
    dead = list((tmp_path / "webhook" / "dead").glob("*.json"))
    assert len(dead) == 1 and "HTTP 422" in dead[0].read_text()


def test_put_is_idempotent_and_order_survives_a_restart(
    hook: RecordingWebhook, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(hook.url, retry=NO_WAIT)
    notes = fired_then_resolved()
    Outbox(tmp_path, [receiver]).put(notes[:1])
    restarted = Outbox(tmp_path, [receiver])
    assert restarted.put(notes) == 1  # the firing is already queued
    assert [n.event for n in restarted.pending("webhook")] == ["firing", "resolved"]


def test_unreadable_outbox_file_is_set_aside(hook: RecordingWebhook, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, [WebhookReceiver(hook.url, retry=NO_WAIT)])
    outbox.put(fired_then_resolved())
    first = sorted((tmp_path / "webhook").glob("*.json"))[0]
    first.write_text("{not json")
    assert [n.event for n in outbox.pending("webhook")] == ["resolved"]
    assert "unreadable outbox file" in (tmp_path / "webhook" / "dead" / first.name).read_text()


def test_timeout_is_a_delivery_error_naming_receiver_and_cause() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        receiver = WebhookReceiver(url, name="pager", timeout_s=0.2, retry=NO_WAIT)
        with pytest.raises(DeliveryError) as info:
            receiver.send(fired_then_resolved()[:1])
    assert not info.value.permanent
    assert str(info.value).startswith(f"pager ({url}): POST firing notification")
    assert "ReadTimeout" in str(info.value)


def test_receiver_names_must_be_unique_directory_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Outbox(tmp_path, [WebhookReceiver("http://x/a"), WebhookReceiver("http://x/b")])
    with pytest.raises(ValueError, match="must start with http"):
        WebhookReceiver("ftp://x")
