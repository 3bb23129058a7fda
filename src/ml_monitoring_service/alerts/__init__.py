"""Alerting: a k-of-n policy over window verdicts, an on-disk outbox, and HTTP receivers.

Per inference tick the daemon calls :meth:`AlertPolicy.observe` with the tick's
:func:`verdicts_from_scores`, :meth:`Outbox.put` with the returned notifications, then
:meth:`Outbox.flush`, which delivers to Alertmanager and/or a JSON webhook. The policy is pure
logic, the outbox is the only thing that touches disk, and the receivers the only thing that
touches the network, so each is tested on its own.
"""

from ml_monitoring_service.alerts.delivery import (
    AlertmanagerReceiver,
    DeliveryError,
    Receiver,
    WebhookReceiver,
    webhook_body,
)
from ml_monitoring_service.alerts.outbox import FlushResult, Outbox
from ml_monitoring_service.alerts.policy import (
    Alert,
    AlertPolicy,
    AlertPolicyConfig,
    IncidentLink,
    Notification,
    WindowVerdict,
    verdicts_from_scores,
)

__all__ = [
    "Alert",
    "AlertPolicy",
    "AlertPolicyConfig",
    "AlertmanagerReceiver",
    "DeliveryError",
    "FlushResult",
    "IncidentLink",
    "Notification",
    "Outbox",
    "Receiver",
    "WebhookReceiver",
    "WindowVerdict",
    "verdicts_from_scores",
    "webhook_body",
]
