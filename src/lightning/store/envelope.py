"""The one event envelope (DESIGN §3): RabbitMQ body, webhook ``data``, GraphQL ``EventRecord``,
CLI JSON line and export line. Domain events are mapped to and from it here and nowhere else.

An envelope is always in the *current* shape: reading one (from the store, from a RabbitMQ body,
from any dict) runs the stored ``data`` through the upcasters (``domain/upcasting.py``) and sets
``schema_version`` to the version it was upcast to. So everything downstream — aggregates, replay
and ``stateAt``, projections reading ``data`` by field name, GraphQL, the CLI, the relay's bodies
(``wire_json``) — sees one shape, and none of them can forget to upcast. Chosen over keeping the
stored shape beside an upcast view because DESIGN §3 makes the envelope one shape everywhere: a
client that saw ``schema_version: 1`` data in one place and version 2 in another would have to
carry upcasters of its own. Only the stored bytes keep the shape they were written in (history is
immutable); a version newer than this code knows is left as it is, never downcast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import UUID, uuid5

from eventsourcing.persistence import Notification, StoredEvent
from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_serializer,
    model_serializer,
    model_validator,
)
from pydantic_core import from_json

from ..caching import cached
from ..domain.messages import DomainEvent
from ..domain.registry import event_from
from ..domain.upcasting import upcast

SCHEMA_VERSION = 1  # what an envelope that names no schema_version was written at
REDACTED_FIELDS = frozenset({"secret_hash", "previous_secret_hash"})


def redacted(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's ``data`` as it may leave the store (DESIGN §3): secret hashes left out (they
    are not secrets, but no client has a use for them and they would let one confirm a guessed
    token offline). The store keeps them: authentication, and later backups, need them."""
    return {k: v for k, v in data.items() if k not in REDACTED_FIELDS}


def loads(text: bytes | str) -> Any:
    """``json.loads``, twice as quick: pydantic-core's parser, which gives the same values for
    what both accept; for what it refuses (a lone surrogate escape such as ``"\\ud800"``, which
    ``json.loads`` reads) or what is not JSON at all, ``json.loads`` decides."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


_NO_OFFSET = timedelta(0)
_FOUR_DIGITS = 1000  # years below are written unpadded by strftime


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC with a Z. A time that has no UTC form (9999-12-31T23:00-12:00 is in the
    year 10000 there; older versions accepted such expiries) keeps its own offset instead of
    making what holds it unreadable."""
    if value.utcoffset() == _NO_OFFSET and value.year >= _FOUR_DIGITS:
        # The common case, and the same text, three times quicker than strftime (a rebuild
        # formats every event's time at least once).
        return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 (the quickest)
            value.year,
            value.month,
            value.day,
            value.hour,
            value.minute,
            value.second,
            value.microsecond,
        )
    try:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        return value.isoformat(timespec="microseconds")


class Envelope(BaseModel):
    # Read tolerantly: an envelope field added by a newer version is ignored, never a crash
    # (what this version writes is built here, field by field). A validation error does not
    # quote its input: its text leaves as an undecodable event's error, and the input may be a
    # whole envelope, secret hashes included.
    model_config = ConfigDict(
        frozen=True, extra="ignore", hide_input_in_errors=True, ignored_types=(cached,)
    )

    id: UUID
    type: str
    aggregate_type: str
    aggregate_id: UUID
    version: int
    position: int
    occurred_at: datetime
    actor: str
    correlation_id: UUID
    causation_id: UUID | None = None
    command_id: UUID | None = None  # the command that produced it; events before it have none
    schema_version: int = SCHEMA_VERSION
    data: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _upcast(cls, value: Any) -> Any:
        """The stored ``data`` in the current shape, ``schema_version`` with it. A malformed
        envelope is left for validation to refuse."""
        return _upcast_fields(value) if isinstance(value, dict) else value

    @model_serializer(mode="wrap")
    def _omit_missing_command(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``command_id`` only where there is one: an event stored before commands carried
        ids reads back, and leaves (``public``, ``wire_json``), in the shape it was written."""
        fields: dict[str, Any] = handler(self)
        if fields.get("command_id", 0) is None:
            del fields["command_id"]
        return fields

    @field_serializer("occurred_at")
    def _serialise_time(self, value: datetime) -> str:
        return format_time(value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy that works out its cached texts again (they may be of a changed field)."""
        copied = super().model_copy(update=update, deep=deep)
        for name in ("aggregate_key", "occurred_text"):
            copied.__dict__.pop(name, None)
        return copied

    @cached
    def aggregate_key(self) -> str:
        """``str(aggregate_id)``, made once: every consumer keys its work by it, several times
        per event (the UUID's own ``str`` is Python code, and a rebuild calls it millions of
        times)."""
        return str(self.aggregate_id)

    @cached
    def occurred_text(self) -> str:
        """``occurred_at`` as written out (``format_time``), made once per envelope."""
        return format_time(self.occurred_at)

    def to_json(self) -> str:
        """The full form, secret hashes included: for the store's side only (tests, backups).
        What a client sees is ``public()``."""
        return self.model_dump_json()

    def public_data(self) -> dict[str, Any]:
        """``data`` as shown to clients (see ``redacted``)."""
        return redacted(self.data)

    def public(self) -> dict[str, Any]:
        """The envelope as it leaves the store for a client — CLI output, RabbitMQ bodies,
        webhooks, exports (DESIGN §3) — as a JSON-able dict, ``data`` redacted."""
        return {**self.model_dump(mode="json"), "data": self.public_data()}

    def public_json(self) -> str:
        """``public()`` as one line of JSON."""
        return json.dumps(self.public(), separators=(",", ":"))

    def domain_event(self) -> DomainEvent | None:
        """The domain event, or None when this code does not know the type (ignored on replay)."""
        return event_from(self.type, self.data, self.schema_version)

    def to_stored_event(self) -> StoredEvent:
        body = self.model_dump(mode="json", exclude={"position"})
        return StoredEvent(
            originator_id=self.aggregate_id,
            originator_version=self.version,
            topic=self.type,
            state=json.dumps(body, separators=(",", ":")).encode(),
        )

    @classmethod
    def from_stored(cls, stored: StoredEvent, position: int) -> Envelope:
        body = loads(stored.state)
        body["position"] = position
        return cls.model_validate(body)

    @classmethod
    def from_notification(cls, notification: Notification) -> Envelope:
        return cls.from_stored(notification, notification.id)


_UNDECODABLE = UUID("8a1f2f4e-6c0b-4a8e-b3f5-1d2c3b4a5f60")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Undecodable(Envelope):
    """A stored event this version cannot read (not JSON, a field missing or malformed),
    carried with what the store itself knows of it — position, stream, version, type — so a
    consumer parks it with its stream instead of stopping at it. Never a domain event."""

    error: str = ""

    @classmethod
    def of(cls, notification: Notification, error: str) -> Undecodable:
        topic = notification.topic
        return cls.model_construct(
            id=uuid5(_UNDECODABLE, str(notification.id)),
            type=topic,
            aggregate_type=topic.partition(".")[0],
            aggregate_id=_uuid(notification.originator_id),
            version=notification.originator_version,
            position=notification.id,
            occurred_at=_EPOCH,
            actor="unknown",
            correlation_id=_UNDECODABLE,
            causation_id=None,
            schema_version=0,
            data={},
            error=error,
        )

    def domain_event(self) -> DomainEvent | None:
        return None


def _uuid(value: UUID | str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        return uuid5(_UNDECODABLE, value)


def decode(notification: Notification) -> Envelope:
    """The envelope of a stored event, or an ``Undecodable`` standing in for it."""
    try:
        return Envelope.from_notification(notification)
    except (ValueError, TypeError, ValidationError) as exc:  # not JSON, not an object, …
        return Undecodable.of(notification, f"{type(exc).__name__}: {str(exc)[:500]}")


def _upcast_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An envelope's fields with ``data`` upcast (the same dict when nothing changes)."""
    type_, data = fields.get("type"), fields.get("data")
    version = fields.get("schema_version", SCHEMA_VERSION)
    if not isinstance(type_, str) or not isinstance(data, dict) or type(version) is not int:
        return fields
    current, data = upcast(type_, version, data)
    if current == version:
        return fields
    return {**fields, "schema_version": current, "data": data}


def wire_json(stored: StoredEvent, position: int) -> tuple[bytes, dict[str, Any]]:
    """The public envelope's JSON for a stored event (``Envelope.public_json``), and its
    fields, without a round trip through the model: the stored state *is* the envelope minus
    its position (see ``to_stored_event``), so the position is spliced in — unless its data
    is in an old shape (it is upcast) or holds a secret hash (the redacted fields are left
    out), when the whole is written out again. For the relay, which handles every event once
    more."""
    stored_fields = loads(stored.state)
    fields = _upcast_fields(stored_fields) if isinstance(stored_fields, dict) else stored_fields
    data = fields.get("data") if isinstance(fields, dict) else None
    if isinstance(data, dict) and (
        fields is not stored_fields or not REDACTED_FIELDS.isdisjoint(data)
    ):
        public = {**fields, "data": redacted(data), "position": position}
        return json.dumps(public, separators=(",", ":")).encode(), public
    body = stored.state.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("a stored event's state is not a JSON object")
    return body[:-1] + b',"position":' + str(position).encode() + b"}", fields


class Metadata(BaseModel):
    """Who and why: stamped on every event a command produces."""

    model_config = ConfigDict(frozen=True)

    actor: str
    correlation_id: UUID
    causation_id: UUID | None = None
    command_id: UUID | None = None


def pending(
    event: DomainEvent,
    *,
    event_id: UUID,
    aggregate_id: UUID,
    version: int,
    occurred_at: datetime,
    meta: Metadata,
) -> Envelope:
    """An envelope for an event not yet stored (position 0 until the store assigns one)."""
    return Envelope(
        id=event_id,
        type=event.type,
        aggregate_type=event.aggregate_type,
        aggregate_id=aggregate_id,
        version=version,
        position=0,
        occurred_at=occurred_at,
        actor=meta.actor,
        correlation_id=meta.correlation_id,
        causation_id=meta.causation_id,
        command_id=meta.command_id,
        schema_version=event.schema_version,
        data=event.model_dump(mode="json", exclude_none=True),
    )
