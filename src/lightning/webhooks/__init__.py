"""The webhook dispatcher (DESIGN §1, §2): the third consumer kind.

Its handler (``router.py``) keeps the subscriptions and records one delivery per (event,
subscription) in the consumer's transaction; the sender (``sender.py``) runs beside the
consumer and sends them, signed (``signing.py``), to checked and pinned addresses
(``guard.py``), retried on a schedule (``schedule.py``), each attempt recorded
(``deliveries.py``). Operators read and re-arm deliveries through ``deliveries.Deliveries``.
"""

from __future__ import annotations

from ..consumers import ConsumerKind, Handler
from .deliveries import (
    STATUSES,
    Attempt,
    Deliveries,
    DeliveryView,
    Recovered,
    subscription_row,
    subscriptions_page,
)
from .router import HANDLER, WebhookRouter, delivery_id
from .schedule import DEFAULT_SCHEDULE, Schedule, parse_schedule
from .sender import Sender, SenderConfig

KIND = "webhooks"


def webhook_dispatcher() -> ConsumerKind:
    """The consumer kind the composition root registers; its workers run the sender."""

    def handlers() -> list[Handler]:
        return [WebhookRouter()]

    return ConsumerKind(KIND, handlers, "webhook subscriptions: records and sends deliveries")


__all__ = [
    "DEFAULT_SCHEDULE",
    "HANDLER",
    "KIND",
    "STATUSES",
    "Attempt",
    "Deliveries",
    "DeliveryView",
    "Recovered",
    "Schedule",
    "Sender",
    "SenderConfig",
    "WebhookRouter",
    "delivery_id",
    "parse_schedule",
    "subscription_row",
    "subscriptions_page",
    "webhook_dispatcher",
]
