"""The WebhookSubscription aggregate: subscribe, update, pause/resume, rotate the signing
secret with a grace period, disable (by failure or by an operator), enable, delete.

The signing secret never reaches the domain: it lives encrypted in the secrets table, and the
events carry only its id there and a fingerprint (DESIGN §4). Whether a URL is acceptable is
decided here for what the URL itself says (scheme, literal addresses, ``localhost``); a name
is resolved, and its addresses checked, by the dispatcher at every attempt (a name's addresses
change, so a check at subscribe time alone would prove nothing).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from .errors import Conflict, NotFound, ValidationFailed
from .event_types import TypeFilter
from .limits import Description, Reason, control_characters
from .messages import Command, DomainEvent

URL_MAX = 2_048
DEFAULT_SECRET_GRACE = timedelta(hours=24)
MAX_SECRET_GRACE = timedelta(days=30)
DisableCause = Literal["failures", "gone", "operator"]
Status = Literal["active", "paused", "disabled", "deleted"]


class UrlRefused(ValidationFailed):
    """A webhook URL the rules refuse (scheme, form, or an address that is not global)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook URL refused: {reason}", details={"url": reason})


# IPv6 forms that carry an IPv4 address in their last 32 bits: NAT64 (well-known and local-use
# prefixes), IPv4-compatible (deprecated) and IPv4-translated.
_EMBEDDING = tuple(
    ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96")
)


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address may receive webhooks: ``is_global``, and for an IPv4-mapped or
    6to4/Teredo-embedded IPv6 address the IPv4 address it stands for too."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in n for n in _EMBEDDING):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return False
        if address.teredo is not None and not all(a.is_global for a in address.teredo):
            return False
    return address.is_global


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL if it may be a webhook endpoint, else ``UrlRefused``."""
    if not 0 < len(url) <= URL_MAX:
        raise UrlRefused(f"a URL has 1 to {URL_MAX} characters")
    if control_characters(url) or any(c.isspace() for c in url):
        raise UrlRefused("no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UrlRefused("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("only http and https URLs")
    if not parts.hostname:
        raise UrlRefused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("no credentials in the URL (they would be kept in the event log)")
    if parts.fragment:
        raise UrlRefused("no #fragment")
    if port == 0:
        raise UrlRefused("port 0")
    _check_host(parts.hostname.rstrip(".").lower(), allow_private=allow_private)
    return url


def _check_host(host: str, *, allow_private: bool) -> None:
    address = literal_address(host)
    if address is None:
        try:
            host.encode("idna")
        except UnicodeError:
            raise UrlRefused(f"{host[:100]!r} is not a valid host name") from None
    if allow_private:
        return
    if address is not None and not is_public(address):
        raise UrlRefused(f"{address} is not a public address")
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise UrlRefused(f"{host} is not a public name")


def _patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("name at least one event-type pattern (* for every public type)")
    TypeFilter.parse(list(value), field="eventTypes")
    return tuple(dict.fromkeys(value))


Patterns = Annotated[tuple[str, ...], AfterValidator(_patterns)]
Fingerprint = Annotated[str, Field(min_length=16, max_length=64, pattern=r"^[0-9a-f]+$")]


class WebhookEvent(DomainEvent):
    aggregate_type = "webhook"


# ---- events -----------------------------------------------------------------------------------


class WebhookSubscribed(WebhookEvent):
    type = "webhook.subscribed"

    url: str
    event_types: tuple[str, ...]
    description: str = ""
    secret_id: UUID
    secret_fingerprint: str


class WebhookUpdated(WebhookEvent):
    """What changed (a field not given stays as it was)."""

    type = "webhook.updated"

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None


class WebhookSecretRotated(WebhookEvent):
    type = "webhook.secret_rotated"

    secret_id: UUID
    secret_fingerprint: str
    previous_valid_until: datetime


class WebhookPaused(WebhookEvent):
    type = "webhook.paused"


class WebhookResumed(WebhookEvent):
    type = "webhook.resumed"


class WebhookDisabled(WebhookEvent):
    type = "webhook.disabled"

    cause: DisableCause
    reason: str = ""


class WebhookEnabled(WebhookEvent):
    type = "webhook.enabled"


class WebhookDeleted(WebhookEvent):
    type = "webhook.deleted"


# ---- commands ---------------------------------------------------------------------------------


class Subscribe(Command):
    subscription_id: UUID
    url: str
    event_types: Patterns
    description: Description = ""
    secret_id: UUID
    secret_fingerprint: Fingerprint
    allow_private: bool = False


class UpdateSubscription(Command):
    subscription_id: UUID
    url: str | None = None
    event_types: Patterns | None = None
    description: Description | None = None
    paused: bool | None = None
    allow_private: bool = False


class RotateSecret(Command):
    subscription_id: UUID
    secret_id: UUID
    secret_fingerprint: Fingerprint
    at: AwareDatetime
    grace_period: Annotated[timedelta, Field(ge=timedelta(0), le=MAX_SECRET_GRACE)] = (
        DEFAULT_SECRET_GRACE
    )


class Pause(Command):
    subscription_id: UUID


class Resume(Command):
    subscription_id: UUID


class Disable(Command):
    subscription_id: UUID
    cause: DisableCause = "operator"
    reason: Reason = ""


class Enable(Command):
    subscription_id: UUID


class Delete(Command):
    subscription_id: UUID


WebhookCommand = (
    Subscribe | UpdateSubscription | RotateSecret | Pause | Resume | Disable | Enable | Delete
)


# ---- state ------------------------------------------------------------------------------------


class WebhookSubscription(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    url: str
    event_types: tuple[str, ...]
    description: str = ""
    status: Status = "active"
    secret_id: UUID
    secret_fingerprint: str
    previous_secret_id: UUID | None = None
    previous_valid_until: datetime | None = None
    disabled_reason: str | None = None
    version: int = 0

    def signing_secrets(self, now: datetime) -> list[UUID]:
        """The secrets that sign a request sent at ``now``: the current one, and the previous
        one until its grace ends."""
        ids = [self.secret_id]
        if (
            self.previous_secret_id is not None
            and self.previous_valid_until is not None
            and now < self.previous_valid_until
        ):
            ids.append(self.previous_secret_id)
        return ids


# ---- decisions --------------------------------------------------------------------------------


def decide(command: WebhookCommand, state: WebhookSubscription | None) -> list[WebhookEvent]:
    if isinstance(command, Subscribe):
        return _subscribe(command, state)
    if state is None:
        raise NotFound(f"webhook subscription {command.subscription_id} does not exist")
    if state.status == "deleted":
        if isinstance(command, Delete):
            return []
        raise Conflict(f"webhook subscription {state.id} is deleted")
    if isinstance(command, UpdateSubscription):
        return _update(command, state)
    if isinstance(command, RotateSecret):
        return _rotate(command, state)
    return _lifecycle(command, state)


def _lifecycle(
    command: Pause | Resume | Disable | Enable | Delete, state: WebhookSubscription
) -> list[WebhookEvent]:
    if isinstance(command, Delete):
        return [WebhookDeleted()]
    if isinstance(command, Disable):
        return [] if state.status == "disabled" else [WebhookDisabled(**_fields(command))]
    if isinstance(command, Enable):
        return [WebhookEnabled()] if state.status == "disabled" else []
    if state.status == "disabled":
        raise Conflict(f"webhook subscription {state.id} is disabled: enable it first")
    if isinstance(command, Pause):
        return [WebhookPaused()] if state.status == "active" else []
    return [WebhookResumed()] if state.status == "paused" else []


def _fields(command: Disable) -> dict[str, object]:
    return {"cause": command.cause, "reason": command.reason}


def _subscribe(command: Subscribe, state: WebhookSubscription | None) -> list[WebhookEvent]:
    if state is not None:
        raise Conflict(f"webhook subscription {command.subscription_id} already exists")
    return [
        WebhookSubscribed(
            url=check_url(command.url, allow_private=command.allow_private),
            event_types=command.event_types,
            description=command.description,
            secret_id=command.secret_id,
            secret_fingerprint=command.secret_fingerprint,
        )
    ]


def _update(command: UpdateSubscription, state: WebhookSubscription) -> list[WebhookEvent]:
    changes: dict[str, object] = {}
    if command.url is not None and command.url != state.url:
        changes["url"] = check_url(command.url, allow_private=command.allow_private)
    if command.event_types is not None and command.event_types != state.event_types:
        changes["event_types"] = command.event_types
    if command.description is not None and command.description != state.description:
        changes["description"] = command.description
    events: list[WebhookEvent] = [WebhookUpdated(**changes)] if changes else []
    if command.paused is not None:
        events += _lifecycle(
            Pause(subscription_id=state.id) if command.paused else Resume(subscription_id=state.id),
            state,
        )
    return events


def _rotate(command: RotateSecret, state: WebhookSubscription) -> list[WebhookEvent]:
    if command.secret_id == state.secret_id:
        return []  # this very rotation is already recorded (a retried command)
    if not timedelta(0) <= command.grace_period <= MAX_SECRET_GRACE:
        raise ValidationFailed(
            "grace period must be between 0 seconds and 30 days",
            details={"gracePeriodSeconds": "out of range"},
        )
    return [
        WebhookSecretRotated(
            secret_id=command.secret_id,
            secret_fingerprint=command.secret_fingerprint,
            previous_valid_until=command.at + command.grace_period,
        )
    ]


# ---- evolution --------------------------------------------------------------------------------


def evolve(
    state: WebhookSubscription | None, event: DomainEvent, aggregate_id: UUID
) -> WebhookSubscription | None:
    """Fold one fact into the state. Never raises: unknown events leave the state unchanged."""
    if isinstance(event, WebhookSubscribed):
        return WebhookSubscription(id=aggregate_id, version=1, **event.model_dump())
    if state is None:
        return None
    update: dict[str, object] = {"version": state.version + 1}
    if isinstance(event, WebhookUpdated):
        update |= event.model_dump(exclude_none=True)
    elif isinstance(event, WebhookSecretRotated):
        update |= {
            "secret_id": event.secret_id,
            "secret_fingerprint": event.secret_fingerprint,
            "previous_secret_id": state.secret_id,
            "previous_valid_until": event.previous_valid_until,
        }
    elif isinstance(event, WebhookPaused):
        update |= {"status": "paused"}
    elif isinstance(event, WebhookResumed | WebhookEnabled):
        update |= {"status": "active", "disabled_reason": None}
    elif isinstance(event, WebhookDisabled):
        update |= {"status": "disabled", "disabled_reason": event.reason or event.cause}
    elif isinstance(event, WebhookDeleted):
        update |= {"status": "deleted"}
    return state.model_copy(update=update)
