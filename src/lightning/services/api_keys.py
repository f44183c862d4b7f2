"""API-key command handlers and authentication of bearer tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..domain import api_keys, webhooks
from ..domain.errors import NotFound
from ..domain.messages import DomainEvent
from ..store.commands import CommandRecord
from ..store.event_store import Events
from ..store.secrets import SecretVault
from .common import (
    Context,
    Loaded,
    Principal,
    as_of,
    load,
    once,
    parse,
    retry_on_conflict,
    stamp,
    utc_now,
)

TOKEN_PREFIX = "lk_"  # noqa: S105 (a prefix, not a secret)
_TOKEN = re.compile(r"^lk_([0-9a-f]{32})_[A-Za-z0-9_-]{43}$")
ADMIN_SECRET_ACTOR = "admin-secret"  # noqa: S105 (an actor name)
DELIVERY_PURPOSE = "api_key_delivery"  # a key's new secret, sealed until its delivery succeeds


def hash_secret(secret: str) -> str:
    # The secrets are 256-bit random values, so a fast hash is enough: there is nothing to
    # brute-force, and authentication stays cheap on every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(key_id: UUID) -> str:
    """A fresh secret that names its key, so authentication is one stream read."""
    return f"{TOKEN_PREFIX}{key_id.hex}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> UUID | None:
    """The key a token names (it carries its key's id), or None when it is no key secret."""
    match = _TOKEN.match(token)
    return None if match is None else UUID(hex=match.group(1))


def principal_of(
    key_id: UUID, state: api_keys.ApiKey | None, secret_hash: str, now: datetime
) -> Principal | None:
    """Who a secret with this hash is at ``now``, for a key in ``state``; None if nobody."""
    until = None if state is None else state.accepted_until(secret_hash, now)
    if state is None or until is False:
        return None
    valid_until = until if isinstance(until, datetime) else None
    return Principal(actor=f"key:{key_id}", role=state.role, key_id=key_id, valid_until=valid_until)


@dataclass(frozen=True)
class KeyResult:
    position: int
    key: api_keys.ApiKey
    secret: str | None = None


def _fold(key_id: UUID) -> Any:
    def evolve(state: api_keys.ApiKey | None, event: DomainEvent) -> api_keys.ApiKey | None:
        return api_keys.evolve(state, event, key_id)

    return evolve


class ApiKeyService:
    def __init__(
        self, store: Events, admin_secret: str | None = None, vault: SecretVault | None = None
    ) -> None:
        self.store = store
        self._admin_secret = admin_secret
        self.vault = vault

    # ---- commands ---------------------------------------------------------------------------

    def issue(
        self,
        ctx: Context,
        *,
        name: str,
        role: str,
        expires_at: datetime | None = None,
        rotation_policy: str | None = None,
        deliver_to: UUID | None = None,
    ) -> KeyResult:
        ctx.principal.require("administer")
        if deliver_to is not None:
            self._require_subscription(deliver_to)
        key_id = ctx.new_id()
        secret = new_secret(key_id)
        command = parse(
            api_keys.IssueApiKey,
            key_id=key_id,
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            issued_at=ctx.at,
            expires_at=expires_at,
            rotation_policy=rotation_policy,
            deliver_to=deliver_to,
        )
        return self._handle(ctx, command, secret)

    def rotate(
        self,
        ctx: Context,
        key_id: UUID,
        *,
        grace_period_seconds: int | None = None,
        compromised: bool = False,
    ) -> KeyResult:
        ctx.principal.require("administer")
        secret = new_secret(key_id)
        grace = None if grace_period_seconds is None else timedelta(seconds=grace_period_seconds)
        command = parse(
            api_keys.RotateApiKey,
            key_id=key_id,
            secret_hash=hash_secret(secret),
            at=ctx.at,
            grace_period=grace,
            compromised=compromised,
        )
        return self._handle(ctx, command, secret)

    def revoke(self, ctx: Context, key_id: UUID, *, reason: str = "") -> KeyResult:
        ctx.principal.require("administer")
        return self._handle(ctx, parse(api_keys.RevokeApiKey, key_id=key_id, reason=reason))

    def retire_previous_secret(
        self, ctx: Context, key_id: UUID, *, cycle: int | None = None
    ) -> KeyResult:
        ctx.principal.require("administer")
        command = api_keys.RetirePreviousSecret(key_id=key_id, at=ctx.at, cycle=cycle)
        return self._handle(ctx, command)

    def note_rotation_due(
        self, ctx: Context, key_id: UUID, *, cycle: int, due_at: datetime
    ) -> KeyResult:
        """The rotation policy's notice (the key saga sends it ``notify before`` days ahead)."""
        ctx.principal.require("administer")
        command = api_keys.NoteRotationDue(key_id=key_id, cycle=cycle, due_at=due_at)
        return self._handle(ctx, command)

    def rotate_by_policy(self, ctx: Context, key_id: UUID, *, cycle: int) -> KeyResult:
        """The policy's rotation (the key saga asks for it at the policy's time): a new secret,
        sealed for the key's ``deliverTo`` subscription, which the webhook dispatcher delivers;
        nothing for a key that names none (its notice stands)."""
        ctx.principal.require("administer")
        if self.vault is None:
            raise TypeError("rotation by policy needs the secret vault")
        current = self._load(key_id)
        key = current.state
        if key is not None and key.deliver_to is not None:
            status = self._subscription_status(key.deliver_to)
            if status in (None, "deleted"):  # no one could receive it: the notice stands
                return KeyResult(current.envelopes[-1].position, key)
        secret = new_secret(key_id)
        command = api_keys.RotateByPolicy(
            key_id=key_id,
            cycle=cycle,
            secret_hash=hash_secret(secret),
            secret_id=ctx.new_id(),
            at=ctx.at,
        )
        return self._handle(ctx, command, secret)

    def _require_subscription(self, subscription_id: UUID) -> None:
        if self._subscription_status(subscription_id) in (None, "deleted"):
            raise NotFound(
                f"webhook subscription {subscription_id} does not exist",
                details={"deliverTo": str(subscription_id)},
            )

    def _subscription_status(self, subscription_id: UUID) -> str | None:
        def fold(
            state: webhooks.WebhookSubscription | None, event: DomainEvent
        ) -> webhooks.WebhookSubscription | None:
            return webhooks.evolve(state, event, subscription_id)

        state = load(self.store, subscription_id, fold, None).state
        return None if state is None else state.status

    def expire(self, ctx: Context, key_id: UUID) -> KeyResult:
        ctx.principal.require("administer")
        return self._handle(ctx, api_keys.ExpireApiKey(key_id=key_id, at=ctx.at))

    def _handle(
        self, ctx: Context, command: api_keys.ApiKeyCommand, secret: str | None = None
    ) -> KeyResult:
        return once(self.store, ctx, lambda: self._apply(ctx, command, secret), self._first)

    def _first(self, record: CommandRecord) -> KeyResult:
        """A repeat's answer: the first result, without the secret it revealed then (DESIGN
        §6: ``secret: null``)."""
        envelopes = as_of(self.store, record)
        fold = _fold(record.aggregate_id)
        state = load(self.store, record.aggregate_id, fold, None, envelopes).state
        assert state is not None
        return KeyResult(record.position, state)

    @retry_on_conflict
    def _apply(
        self, ctx: Context, command: api_keys.ApiKeyCommand, secret: str | None = None
    ) -> KeyResult:
        current = self._load(command.key_id)
        events = api_keys.decide(command, current.state)
        if not events:
            assert current.state is not None
            return KeyResult(current.envelopes[-1].position, current.state)
        envelopes = stamp(ctx, command.key_id, current.version, events)

        def append() -> KeyResult:
            stored = self.store.append(envelopes, command=ctx.claim(command.key_id))
            fold = _fold(command.key_id)
            state = load(self.store, command.key_id, fold, None, current.envelopes + stored).state
            assert state is not None
            return KeyResult(stored[-1].position, state, secret)

        if isinstance(command, api_keys.RotateByPolicy):
            assert self.vault is not None and secret is not None
            result = self.vault.sealing(
                self.store, command.secret_id, DELIVERY_PURPOSE, secret, append
            )
            return KeyResult(result.position, result.key)  # the secret goes out by webhook only
        return append()

    # ---- reads ------------------------------------------------------------------------------

    def get(self, key_id: UUID) -> api_keys.ApiKey:
        state = self._load(key_id).state
        if state is None:
            raise NotFound(f"API key {key_id} does not exist")
        return state

    def authenticate(self, token: str, now: datetime | None = None) -> Principal | None:
        """The principal a bearer token stands for, or None. Checked against the event store
        (the source of truth), so a revocation takes effect on the next request. (The API
        caches ``key_state`` for under a second: ``lightning.api.credentials``.)"""
        if self.is_admin_secret(token):
            return Principal(actor=ADMIN_SECRET_ACTOR, role="admin")
        key_id = key_id_of(token)
        if key_id is None:
            return None
        return principal_of(key_id, self.key_state(key_id), hash_secret(token), now or utc_now())

    def is_admin_secret(self, token: str) -> bool:
        return bool(self._admin_secret) and hmac.compare_digest(
            token.encode(), (self._admin_secret or "").encode()
        )

    def key_state(self, key_id: UUID) -> api_keys.ApiKey | None:
        """The key as its events leave it (None: no such key)."""
        return self._load(key_id).state

    def _load(self, key_id: UUID) -> Loaded[api_keys.ApiKey | None]:
        return load(self.store, key_id, _fold(key_id), None)
