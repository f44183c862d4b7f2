"""Webhook-subscription command handlers: load → decide → append, the signing secret sealed in
the secrets table before the event that names it (``store/secrets.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from ..domain import webhooks
from ..domain.errors import NotFound
from ..domain.messages import DomainEvent
from ..store.commands import CommandRecord
from ..store.event_store import Events
from ..store.secrets import SecretVault, fingerprint, new_webhook_secret
from .common import Context, Loaded, as_of, load, once, parse, retry_on_conflict, stamp

SECRET_PURPOSE = "webhook"  # noqa: S105 (a purpose, not a secret)


@dataclass(frozen=True)
class SubscriptionResult:
    position: int
    subscription: webhooks.WebhookSubscription
    secret: str | None = None


def _fold(subscription_id: UUID) -> Any:
    def evolve(
        state: webhooks.WebhookSubscription | None, event: DomainEvent
    ) -> webhooks.WebhookSubscription | None:
        return webhooks.evolve(state, event, subscription_id)

    return evolve


class WebhookService:
    def __init__(self, store: Events, vault: SecretVault, *, allow_private: bool = False) -> None:
        self.store = store
        self.vault = vault
        self.allow_private = allow_private

    # ---- commands ---------------------------------------------------------------------------

    def subscribe(
        self, ctx: Context, *, url: str, event_types: list[str], description: str = ""
    ) -> SubscriptionResult:
        ctx.principal.require("operate")
        secret = new_webhook_secret()
        command = parse(
            webhooks.Subscribe,
            subscription_id=ctx.new_id(),
            url=url,
            event_types=tuple(event_types),
            description=description,
            secret_id=ctx.new_id(),
            secret_fingerprint=fingerprint(secret),
            allow_private=self.allow_private,
        )
        return self._handle(ctx, command, secret)

    def update(
        self,
        ctx: Context,
        subscription_id: UUID,
        *,
        url: str | None = None,
        event_types: list[str] | None = None,
        description: str | None = None,
        paused: bool | None = None,
    ) -> SubscriptionResult:
        ctx.principal.require("operate")
        command = parse(
            webhooks.UpdateSubscription,
            subscription_id=subscription_id,
            url=url,
            event_types=None if event_types is None else tuple(event_types),
            description=description,
            paused=paused,
            allow_private=self.allow_private,
        )
        return self._handle(ctx, command)

    def rotate_secret(
        self, ctx: Context, subscription_id: UUID, *, grace_period_seconds: int | None = None
    ) -> SubscriptionResult:
        ctx.principal.require("operate")
        secret = new_webhook_secret()
        grace = (
            webhooks.DEFAULT_SECRET_GRACE
            if grace_period_seconds is None
            else timedelta(seconds=grace_period_seconds)
        )
        command = parse(
            webhooks.RotateSecret,
            subscription_id=subscription_id,
            secret_id=ctx.new_id(),
            secret_fingerprint=fingerprint(secret),
            at=ctx.at,
            grace_period=grace,
        )
        return self._handle(ctx, command, secret)

    def pause(self, ctx: Context, subscription_id: UUID) -> SubscriptionResult:
        return self.update(ctx, subscription_id, paused=True)

    def resume(self, ctx: Context, subscription_id: UUID) -> SubscriptionResult:
        return self.update(ctx, subscription_id, paused=False)

    def disable(
        self,
        ctx: Context,
        subscription_id: UUID,
        *,
        reason: str = "",
        cause: webhooks.DisableCause = "operator",
    ) -> SubscriptionResult:
        ctx.principal.require("operate")
        command = parse(
            webhooks.Disable, subscription_id=subscription_id, cause=cause, reason=reason
        )
        return self._handle(ctx, command)

    def enable(self, ctx: Context, subscription_id: UUID) -> SubscriptionResult:
        ctx.principal.require("operate")
        return self._handle(ctx, webhooks.Enable(subscription_id=subscription_id))

    def delete(self, ctx: Context, subscription_id: UUID) -> SubscriptionResult:
        ctx.principal.require("operate")
        return self._handle(ctx, webhooks.Delete(subscription_id=subscription_id))

    def _handle(
        self, ctx: Context, command: webhooks.WebhookCommand, secret: str | None = None
    ) -> SubscriptionResult:
        return once(self.store, ctx, lambda: self._apply(ctx, command, secret), self._first)

    def _first(self, record: CommandRecord) -> SubscriptionResult:
        envelopes = as_of(self.store, record)
        fold = _fold(record.aggregate_id)
        state = load(self.store, record.aggregate_id, fold, None, envelopes).state
        assert state is not None
        return SubscriptionResult(record.position, state)

    @retry_on_conflict
    def _apply(
        self, ctx: Context, command: webhooks.WebhookCommand, secret: str | None
    ) -> SubscriptionResult:
        subscription_id = command.subscription_id
        current = self._load(subscription_id)
        events = webhooks.decide(command, current.state)
        if not events:
            assert current.state is not None
            return SubscriptionResult(current.envelopes[-1].position, current.state)
        envelopes = stamp(ctx, subscription_id, current.version, events)

        def append() -> SubscriptionResult:
            stored = self.store.append(envelopes, command=ctx.claim(subscription_id))
            fold = _fold(subscription_id)
            state = load(self.store, subscription_id, fold, None, current.envelopes + stored)
            assert state.state is not None
            return SubscriptionResult(stored[-1].position, state.state, secret)

        sealed = getattr(command, "secret_id", None)
        if secret is None or sealed is None:
            return append()
        return self.vault.sealing(self.store, sealed, SECRET_PURPOSE, secret, append)

    # ---- reads ------------------------------------------------------------------------------

    def get(self, subscription_id: UUID) -> webhooks.WebhookSubscription:
        state = self._load(subscription_id).state
        if state is None:
            raise NotFound(f"webhook subscription {subscription_id} does not exist")
        return state

    def _load(self, subscription_id: UUID) -> Loaded[webhooks.WebhookSubscription | None]:
        return load(self.store, subscription_id, _fold(subscription_id), None)
