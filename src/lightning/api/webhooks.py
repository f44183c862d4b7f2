"""Webhook subscriptions and their deliveries in GraphQL, merged into ``Query`` and ``Mutation``
by ``schema.build_schema``. Resolvers are thin: one service or read call each."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from ..domain.webhooks import WebhookSubscription as SubscriptionState
from ..projections.queries import Page
from ..services.webhooks import SubscriptionResult
from ..store.backends import Row
from ..webhooks import HANDLER as WEBHOOKS
from ..webhooks import DeliveryView, subscription_row, subscriptions_page
from .context import (
    CanOperate,
    CanRead,
    app_of,
    check_first,
    consistent,
    ctx_of,
    row_size,
    run,
    uuid_arg,
    within_budget,
)
from .types import Connection, connection


@strawberry.enum
class WebhookSubscriptionStatus(Enum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"
    DELETED = "deleted"


@strawberry.enum
class WebhookDeliveryStatus(Enum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


@strawberry.type
class WebhookSubscription:
    id: strawberry.ID
    url: str
    event_types: list[str]
    description: str
    status: WebhookSubscriptionStatus
    secret_fingerprint: str = strawberry.field(
        description="the first 16 hex digits of the current secret's SHA-256"
    )
    previous_secret_valid_until: datetime | None = strawberry.field(
        description="until when the previous secret signs too (after a rotation)"
    )
    disabled_reason: str | None
    failing_since: datetime | None = strawberry.field(
        description="since when every attempt has failed (the circuit breaker's clock)"
    )
    version: int

    @classmethod
    def from_state(cls, state: SubscriptionState) -> WebhookSubscription:
        return cls(
            id=strawberry.ID(str(state.id)),
            url=state.url,
            event_types=list(state.event_types),
            description=state.description,
            status=WebhookSubscriptionStatus(state.status),
            secret_fingerprint=state.secret_fingerprint,
            previous_secret_valid_until=state.previous_valid_until,
            disabled_reason=state.disabled_reason,
            failing_since=None,
            version=state.version,
        )

    @classmethod
    def from_row(cls, row: Row) -> WebhookSubscription:
        return cls(
            id=strawberry.ID(row["id"]),
            url=row["url"],
            event_types=json.loads(row["event_types"]),
            description=row["description"],
            status=WebhookSubscriptionStatus(row["status"]),
            secret_fingerprint=row["secret_fingerprint"],
            previous_secret_valid_until=_time(row["previous_valid_until"]),
            disabled_reason=row["disabled_reason"],
            failing_since=_time(row["failing_since"]),
            version=int(row["version"]),
        )


@strawberry.type
class WebhookAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None = strawberry.field(description="the response's first 1 KiB")


@strawberry.type
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="also the webhook-id header (msg_<hex>)")
    subscription_id: strawberry.ID
    event_id: strawberry.ID
    position: int
    event_type: str
    status: WebhookDeliveryStatus
    attempt_count: int
    attempts: list[WebhookAttempt]
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_view(cls, view: DeliveryView) -> WebhookDelivery:
        row = view.row
        return cls(
            id=strawberry.ID(row["id"]),
            subscription_id=strawberry.ID(row["subscription_id"]),
            event_id=strawberry.ID(row["event_id"]),
            position=int(row["position"]),
            event_type=row["event_type"],
            status=WebhookDeliveryStatus(row["status"]),
            attempt_count=int(row["attempts"]),
            attempts=[
                WebhookAttempt(
                    attempt=int(a["attempt"]),
                    at=_time(a["at"]),  # type: ignore[arg-type]
                    status_code=a["status_code"],
                    latency_ms=float(a["latency_ms"]),
                    error=a["error"],
                    response=a["response"],
                )
                for a in view.attempts
            ],
            next_attempt_at=_time(row["next_attempt_at"]) if row["status"] == "PENDING" else None,
            last_error=row["last_error"],
            created_at=_time(row["created_at"]),  # type: ignore[arg-type]
            updated_at=_time(row["updated_at"]),  # type: ignore[arg-type]
        )


@strawberry.input
class SubscribeWebhookInput:
    url: str
    event_types: list[str] = strawberry.field(
        description="event-type patterns: agent.retired, agent.* or * (every public type)"
    )
    description: str = ""
    command_id: str | None = None


@strawberry.type
class SubscribeWebhookPayload:
    secret: str | None = strawberry.field(
        description="the signing secret (whsec_…), shown once: null when the command repeats"
    )
    position: int
    subscription: WebhookSubscription


@strawberry.type
class WebhookSubscriptionPayload:
    position: int
    subscription: WebhookSubscription


@strawberry.type
class RotateWebhookSecretPayload:
    secret: str | None = strawberry.field(description="shown once: null when the command repeats")
    position: int
    subscription: WebhookSubscription


@strawberry.type
class RedeliverWebhookPayload:
    delivery_id: strawberry.ID


@strawberry.type
class RecoverWebhooksPayload:
    deliveries: int = strawberry.field(description="deliveries re-armed or recorded")
    next_since: int | None = strawberry.field(
        description="set when the limit of one call (10,000) was reached: recover again from it"
    )


def _delivery_size(page: Page[DeliveryView]) -> int:
    return sum(row_size(v.row) + sum(map(row_size, v.attempts)) for _, v in page.items)


@strawberry.type
class WebhookQuery:
    @strawberry.field(permission_classes=[CanRead])
    async def webhook_subscriptions(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        status: WebhookSubscriptionStatus | None = None,
        consistent_with: int | None = None,
    ) -> Connection[WebhookSubscription]:
        check_first(first)
        await consistent(info, consistent_with, WEBHOOKS)
        read = functools.partial(
            subscriptions_page,
            app_of(info).store.backend,
            first=first,
            after=after,
            status=None if status is None else status.value,
        )
        page = await within_budget(
            info, lambda: run(read), lambda p: sum(row_size(r) for _, r in p.items)
        )
        return connection(page, WebhookSubscription.from_row)

    @strawberry.field(permission_classes=[CanRead])
    async def webhook_subscription(
        self, info: Info, id: strawberry.ID, consistent_with: int | None = None
    ) -> WebhookSubscription | None:
        key = str(uuid_arg(id))
        await consistent(info, consistent_with, WEBHOOKS, key=key)
        row = await run(subscription_row, app_of(info).store.backend, key)
        return None if row is None else WebhookSubscription.from_row(row)

    @strawberry.field(
        permission_classes=[CanRead],
        description="Deliveries, newest event first, each with every attempt.",
    )
    async def webhook_deliveries(
        self,
        info: Info,
        subscription_id: strawberry.ID | None = None,
        status: WebhookDeliveryStatus | None = None,
        first: int = 50,
        after: str | None = None,
        consistent_with: int | None = None,
    ) -> Connection[WebhookDelivery]:
        check_first(first)
        await consistent(info, consistent_with, WEBHOOKS)
        subscription = None if subscription_id is None else str(uuid_arg(subscription_id))
        read = functools.partial(
            app_of(info).deliveries.listed,
            subscription_id=subscription,
            status=None if status is None else status.value,
            first=first,
            after=after,
        )
        page = await within_budget(info, lambda: run(read), _delivery_size)
        return connection(page, WebhookDelivery.from_view)

    @strawberry.field(permission_classes=[CanRead])
    async def webhook_delivery(
        self, info: Info, id: strawberry.ID, consistent_with: int | None = None
    ) -> WebhookDelivery:
        await consistent(info, consistent_with, WEBHOOKS)
        view = await run(app_of(info).deliveries.get, str(uuid_arg(id)))
        return WebhookDelivery.from_view(view)


def _payload(result: SubscriptionResult) -> WebhookSubscriptionPayload:
    return WebhookSubscriptionPayload(
        position=result.position,
        subscription=WebhookSubscription.from_state(result.subscription),
    )


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new subscription: it receives the matching events appended after it,"
        " signed with the secret this answers with (Standard Webhooks).",
    )
    async def subscribe_webhook(
        self, info: Info, input: SubscribeWebhookInput
    ) -> SubscribeWebhookPayload:
        result = await run(
            app_of(info).webhooks.subscribe,
            ctx_of(info, input.command_id),
            url=input.url,
            event_types=input.event_types,
            description=input.description,
        )
        return SubscribeWebhookPayload(
            secret=result.secret,
            position=result.position,
            subscription=WebhookSubscription.from_state(result.subscription),
        )

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="Change what is given (url, eventTypes, description), pause or resume.",
    )
    async def update_webhook_subscription(
        self,
        info: Info,
        id: strawberry.ID,
        url: str | None = None,
        event_types: list[str] | None = None,
        description: str | None = None,
        paused: bool | None = None,
        command_id: str | None = None,
    ) -> WebhookSubscriptionPayload:
        result = await run(
            app_of(info).webhooks.update,
            ctx_of(info, command_id),
            uuid_arg(id),
            url=url,
            event_types=event_types,
            description=description,
            paused=paused,
        )
        return _payload(result)

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new signing secret; the previous one signs too (a second v1 entry)"
        " until the grace period ends (default 24 h, at most 30 days).",
    )
    async def rotate_webhook_secret(
        self,
        info: Info,
        id: strawberry.ID,
        grace_period_seconds: int | None = None,
        command_id: str | None = None,
    ) -> RotateWebhookSecretPayload:
        result = await run(
            app_of(info).webhooks.rotate_secret,
            ctx_of(info, command_id),
            uuid_arg(id),
            grace_period_seconds=grace_period_seconds,
        )
        return RotateWebhookSecretPayload(
            secret=result.secret,
            position=result.position,
            subscription=WebhookSubscription.from_state(result.subscription),
        )

    @strawberry.mutation(permission_classes=[CanOperate])
    async def disable_webhook_subscription(
        self, info: Info, id: strawberry.ID, reason: str = "", command_id: str | None = None
    ) -> WebhookSubscriptionPayload:
        webhooks = app_of(info).webhooks
        ctx = ctx_of(info, command_id)
        return _payload(await run(webhooks.disable, ctx, uuid_arg(id), reason=reason))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="Enable a disabled subscription (recoverWebhooks sends what it missed).",
    )
    async def enable_webhook_subscription(
        self, info: Info, id: strawberry.ID, command_id: str | None = None
    ) -> WebhookSubscriptionPayload:
        webhooks = app_of(info).webhooks
        return _payload(await run(webhooks.enable, ctx_of(info, command_id), uuid_arg(id)))

    @strawberry.mutation(permission_classes=[CanOperate])
    async def delete_webhook_subscription(
        self, info: Info, id: strawberry.ID, command_id: str | None = None
    ) -> WebhookSubscriptionPayload:
        webhooks = app_of(info).webhooks
        return _payload(await run(webhooks.delete, ctx_of(info, command_id), uuid_arg(id)))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new round of attempts for one delivery, the first at once (same"
        " webhook-id).",
    )
    async def redeliver_webhook(
        self, info: Info, delivery_id: strawberry.ID
    ) -> RedeliverWebhookPayload:
        app = app_of(info)
        ctx = ctx_of(info)
        found = await run(app.redeliver_webhook, ctx, uuid_arg(delivery_id, "deliveryId"))
        return RedeliverWebhookPayload(delivery_id=strawberry.ID(found))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="Send again every event from position `since` on that the subscription"
        " matches now, read from the log (also what it missed while disabled).",
    )
    async def recover_webhooks(
        self, info: Info, subscription_id: strawberry.ID, since: int
    ) -> RecoverWebhooksPayload:
        app = app_of(info)
        subscription = uuid_arg(subscription_id, "subscriptionId")
        found = await run(app.recover_webhooks, ctx_of(info), subscription, since)
        return RecoverWebhooksPayload(deliveries=found.deliveries, next_since=found.next_since)
