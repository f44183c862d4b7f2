"""The ApiKey aggregate: issue, rotate with a grace period, retire the previous secret, expire,
revoke. Secrets never reach the domain: commands carry only their SHA-256 hashes."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .errors import Conflict, NotFound, ValidationFailed
from .limits import Name, Reason, check_expiry
from .messages import Command, DomainEvent

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "operator", "viewer")
RotationPolicyName = Literal["standard", "high_security", "low_security"]


class RotationPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    rotate_every_days: int
    notify_before_days: int
    grace_days: int


ROTATION_POLICIES: dict[RotationPolicyName, RotationPolicy] = {
    "standard": RotationPolicy(rotate_every_days=90, notify_before_days=7, grace_days=30),
    "high_security": RotationPolicy(rotate_every_days=30, notify_before_days=3, grace_days=7),
    "low_security": RotationPolicy(rotate_every_days=180, notify_before_days=14, grace_days=60),
}
DEFAULT_GRACE = timedelta(days=ROTATION_POLICIES["standard"].grace_days)
MAX_GRACE = timedelta(days=365)


class ApiKeyEvent(DomainEvent):
    aggregate_type = "api_key"


# ---- events -----------------------------------------------------------------------------------


class ApiKeyIssued(ApiKeyEvent):
    type = "api_key.issued"

    name: str
    role: Role
    secret_hash: str
    expires_at: datetime | None = None
    rotation_policy: RotationPolicyName | None = None
    deliver_to: UUID | None = None  # the webhook subscription that receives automatic rotations


class ApiKeyRotated(ApiKeyEvent):
    """A new secret. An automatic rotation (by the key's policy) names the webhook subscription
    it is ``delivered_to`` and the id of the new secret, sealed in the secrets table until that
    delivery succeeds (the secret itself is never in the log)."""

    type = "api_key.rotated"

    secret_hash: str
    previous_valid_until: datetime
    compromised: bool = False
    delivered_to: UUID | None = None
    secret_id: UUID | None = None


class ApiKeyPreviousSecretRetired(ApiKeyEvent):
    type = "api_key.previous_secret_retired"


class ApiKeyExpired(ApiKeyEvent):
    type = "api_key.expired"


class ApiKeyRevoked(ApiKeyEvent):
    type = "api_key.revoked"

    reason: str = ""


class ApiKeyRotationDue(ApiKeyEvent):
    """The notice a rotation policy gives ``notify_before_days`` ahead: the key is due to be
    rotated at ``due_at``. It stands until the key is rotated."""

    type = "api_key.rotation_due"

    due_at: datetime
    policy: RotationPolicyName


# ---- commands ---------------------------------------------------------------------------------


class IssueApiKey(Command):
    key_id: UUID
    name: Name
    role: Role
    secret_hash: str = Field(min_length=64, max_length=64)
    issued_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    rotation_policy: RotationPolicyName | None = None
    deliver_to: UUID | None = None


class RotateApiKey(Command):
    key_id: UUID
    secret_hash: str = Field(min_length=64, max_length=64)
    at: AwareDatetime
    grace_period: timedelta | None = None
    compromised: bool = False


class RetirePreviousSecret(Command):
    """Retire the previous secret (before its grace ends, too). ``cycle``: only if the key's
    latest rotation is the one at that version of the key (the key saga's timer is for one
    rotation: after a newer one it changes nothing)."""

    key_id: UUID
    at: AwareDatetime
    cycle: int | None = Field(default=None, ge=1)


class ExpireApiKey(Command):
    key_id: UUID
    at: AwareDatetime


class RevokeApiKey(Command):
    key_id: UUID
    reason: Reason = ""


class NoteRotationDue(Command):
    """The key saga's notice for the rotation cycle that began at version ``cycle`` of the key
    (its issue, or a rotation); a notice for a cycle that has ended changes nothing."""

    key_id: UUID
    cycle: int = Field(ge=1)
    due_at: AwareDatetime


class RotateByPolicy(Command):
    """The policy's rotation of the cycle that began at version ``cycle``, for a key that names
    a ``deliver_to`` subscription: the new secret (sealed as ``secret_id``) goes out to it. For
    a cycle that has ended, a key that is not active or names no subscription: nothing."""

    key_id: UUID
    cycle: int = Field(ge=1)
    secret_hash: str = Field(min_length=64, max_length=64)
    secret_id: UUID
    at: AwareDatetime


ApiKeyCommand = (
    IssueApiKey
    | RotateByPolicy
    | RotateApiKey
    | RetirePreviousSecret
    | ExpireApiKey
    | RevokeApiKey
    | NoteRotationDue
)


# ---- state ------------------------------------------------------------------------------------


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    name: str
    role: Role
    status: Literal["active", "expired", "revoked"] = "active"
    secret_hash: str
    previous_secret_hash: str | None = None
    previous_valid_until: datetime | None = None
    expires_at: datetime | None = None
    rotation_policy: RotationPolicyName | None = None
    deliver_to: UUID | None = None
    cycle: int = 1  # the version of the key that began its rotation cycle: its issue or rotation
    rotation_due_at: datetime | None = None  # a rotation notice stands
    version: int = 0

    def authenticates(self, secret_hash: str, now: datetime) -> bool:
        """Whether a secret with this hash is accepted at ``now`` (grace is a query-time check)."""
        return self.accepted_until(secret_hash, now) is not False

    def accepted_until(self, secret_hash: str, now: datetime) -> datetime | bool | None:
        """False when a secret with this hash is not accepted at ``now``; otherwise until when
        it will be (None: until something happens to the key)."""
        if self.status != "active" or (self.expires_at is not None and now >= self.expires_at):
            return False
        if hmac.compare_digest(self.secret_hash, secret_hash):
            return self.expires_at
        if (
            self.previous_secret_hash is not None
            and self.previous_valid_until is not None
            and now < self.previous_valid_until
            and hmac.compare_digest(self.previous_secret_hash, secret_hash)
        ):
            ends = [t for t in (self.expires_at, self.previous_valid_until) if t is not None]
            return min(ends)
        return False


# ---- decisions --------------------------------------------------------------------------------


def decide(command: ApiKeyCommand, state: ApiKey | None) -> list[ApiKeyEvent]:
    if isinstance(command, IssueApiKey):
        return _issue(command, state)
    if state is None:
        raise NotFound(f"API key {command.key_id} does not exist")
    if isinstance(command, RevokeApiKey):
        return [] if state.status == "revoked" else [ApiKeyRevoked(reason=command.reason)]
    if isinstance(command, RetirePreviousSecret):
        return _retire_previous(command, state)
    if isinstance(command, ExpireApiKey):
        return _expire(command, state)
    if isinstance(command, NoteRotationDue):
        return _rotation_due(command, state)
    if isinstance(command, RotateByPolicy):
        return _rotate_by_policy(command, state)
    return _rotate(command, state)


def _rotate_by_policy(command: RotateByPolicy, state: ApiKey) -> list[ApiKeyEvent]:
    if (
        state.status != "active"
        or _has_expired(state, command.at)
        or state.rotation_policy is None
        or state.deliver_to is None
        or command.cycle != state.cycle  # rotated meanwhile: that cycle is over
    ):
        return []
    policy = ROTATION_POLICIES[state.rotation_policy]
    return [
        ApiKeyRotated(
            secret_hash=command.secret_hash,
            previous_valid_until=command.at + timedelta(days=policy.grace_days),
            delivered_to=state.deliver_to,
            secret_id=command.secret_id,
        )
    ]


def _retire_previous(command: RetirePreviousSecret, state: ApiKey) -> list[ApiKeyEvent]:
    if state.previous_secret_hash is None:
        return []
    if command.cycle is not None and command.cycle != state.cycle:
        return []  # asked at the end of an earlier rotation's grace: that secret is gone
    return [ApiKeyPreviousSecretRetired()]


def _rotation_due(command: NoteRotationDue, state: ApiKey) -> list[ApiKeyEvent]:
    if (
        state.status != "active"
        or state.rotation_policy is None
        or command.cycle != state.cycle  # that cycle ended with a rotation
        or state.rotation_due_at is not None  # the notice stands already
    ):
        return []
    return [ApiKeyRotationDue(due_at=command.due_at, policy=state.rotation_policy)]


def _issue(command: IssueApiKey, state: ApiKey | None) -> list[ApiKeyEvent]:
    if state is not None:
        raise Conflict(f"API key {command.key_id} already exists")
    if command.deliver_to is not None and command.rotation_policy is None:
        raise ValidationFailed(
            "deliverTo names where the key's automatic rotations go: give a rotationPolicy too",
            details={"deliverTo": "needs a rotationPolicy"},
        )
    expires_at = command.expires_at
    if expires_at is not None:
        expires_at = check_expiry(expires_at, command.issued_at)
    return [
        ApiKeyIssued(
            name=command.name,
            role=command.role,
            secret_hash=command.secret_hash,
            expires_at=expires_at,
            rotation_policy=command.rotation_policy,
            deliver_to=command.deliver_to,
        )
    ]


def _rotate(command: RotateApiKey, state: ApiKey) -> list[ApiKeyEvent]:
    if hmac.compare_digest(state.secret_hash, command.secret_hash):
        return []  # this very rotation is already recorded (a retried command)
    if state.status != "active" or _has_expired(state, command.at):
        raise Conflict(f"API key {state.id} is {_status_at(state, command.at)} and can't rotate")
    grace = command.grace_period
    if grace is None:
        policy = ROTATION_POLICIES.get(state.rotation_policy) if state.rotation_policy else None
        grace = timedelta(days=policy.grace_days) if policy else DEFAULT_GRACE
    if command.compromised:
        grace = timedelta(0)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise ValidationFailed(
            "grace period must be between 0 seconds and 365 days",
            details={"grace_period": "out of range"},
        )
    return [
        ApiKeyRotated(
            secret_hash=command.secret_hash,
            previous_valid_until=command.at + grace,
            compromised=command.compromised,
        )
    ]


def _expire(command: ExpireApiKey, state: ApiKey) -> list[ApiKeyEvent]:
    if state.status != "active":
        return []
    if not _has_expired(state, command.at):
        raise Conflict(f"API key {state.id} is not due to expire")
    return [ApiKeyExpired()]


def _has_expired(state: ApiKey, at: datetime) -> bool:
    return state.expires_at is not None and at >= state.expires_at


def _status_at(state: ApiKey, at: datetime) -> str:
    return "expired" if state.status == "active" and _has_expired(state, at) else state.status


# ---- evolution --------------------------------------------------------------------------------


def evolve(state: ApiKey | None, event: DomainEvent, aggregate_id: UUID) -> ApiKey | None:
    """Fold one fact into the state. Never raises: unknown events leave the state unchanged."""
    if isinstance(event, ApiKeyIssued):
        return ApiKey(id=aggregate_id, version=1, **event.model_dump())
    if state is None:
        return None
    version = state.version + 1
    update: dict[str, object] = {"version": version}
    if isinstance(event, ApiKeyRotated):
        update |= {
            "secret_hash": event.secret_hash,
            "previous_secret_hash": state.secret_hash,
            "previous_valid_until": event.previous_valid_until,
            "cycle": version,
            "rotation_due_at": None,
        }
    elif isinstance(event, ApiKeyRotationDue):
        update |= {"rotation_due_at": event.due_at}
    elif isinstance(event, ApiKeyPreviousSecretRetired):
        update |= {"previous_secret_hash": None, "previous_valid_until": None}
    elif isinstance(event, ApiKeyExpired):
        update |= {"status": "expired"}
    elif isinstance(event, ApiKeyRevoked):
        update |= {"status": "revoked", "previous_secret_hash": None, "previous_valid_until": None}
    return state.model_copy(update=update)
