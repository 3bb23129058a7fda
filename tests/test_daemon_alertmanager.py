"""Real delivery: daemon → outbox → Alertmanager (the real binary) → webhook receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ml_monitoring_service.daemon.scheduler import Daemon
from standins.alertmanager_server import RecordingWebhook, running_alertmanager, wait_until
from test_daemon import daemon_env, running, sim_clock, tiny_sets

__all__ = ["running"]  # the fixture, imported for pytest


def _alerts(webhook: RecordingWebhook) -> list[dict[str, Any]]:
    return [alert for body in webhook.bodies() for alert in body.get("alerts", [])]


@pytest.mark.slow
def test_daemon_alerts_reach_the_webhook_through_alertmanager(
    tmp_path: Path, running: Callable[[Daemon], Daemon]
) -> None:
    with RecordingWebhook() as webhook, running_alertmanager(tmp_path, webhook.url) as am_url:
        env = daemon_env(tmp_path, alertmanager_url=am_url)
        daemon = running(Daemon(tiny_sets(tmp_path, "tiny"), env, clock=sim_clock()))
        assert daemon.outbox is not None
        wait_until(lambda: bool(_alerts(webhook)), 60, "an alert routed by Alertmanager")
        alert = _alerts(webhook)[0]
        assert alert["status"] == "firing"
        labels = alert["labels"]
        assert labels["alertname"] == "MLMonitoringAnomaly"
        assert labels["service_set"] == "tiny" and labels["alert_key"] == "grid_30s"
        assert labels["service"] in {"frontend", "cart", "checkout", "payment"}
        assert labels["metric"] and labels["severity"] in {"warning", "critical"}
        assert "threshold" in alert["annotations"]["summary"]
