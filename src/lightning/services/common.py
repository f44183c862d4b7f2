"""What every command handler shares: who is acting, the clock and ids, loading a stream,
stamping envelopes, and retrying optimistic-concurrency conflicts."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar
from uuid import UUID, uuid4

from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from ..domain.errors import ConcurrencyConflict, Forbidden
from ..domain.limits import check_event_size
from ..domain.messages import Command, DomainEvent
from ..store.envelope import Envelope, Metadata, pending
from ..store.event_store import EventStore

Role = Literal["admin", "operator", "viewer"]
Permission = Literal["read", "operate", "administer"]

_GRANTS: dict[Role, frozenset[Permission]] = {
    "admin": frozenset({"read", "operate", "administer"}),
    "operator": frozenset({"read", "operate"}),
    "viewer": frozenset({"read"}),
}


@dataclass(frozen=True)
class Principal:
    actor: str
    role: Role
    key_id: UUID | None = None
    valid_until: datetime | None = None  # when its credential stops authenticating by itself

    def can(self, permission: Permission) -> bool:
        return permission in _GRANTS[self.role]

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise Forbidden(f"role {self.role!r} may not {permission}")


SYSTEM = Principal(actor="system", role="admin")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """Everything a command needs from outside the domain; tests pin ``now`` and ``new_id``.
    One per command: its time and correlation id are that command's."""

    principal: Principal
    correlation_id: UUID = field(default_factory=uuid4)
    causation_id: UUID | None = None
    command_id: UUID = field(default_factory=uuid4)  # unique per principal (applied_commands)
    now: Callable[[], datetime] = utc_now
    new_id: Callable[[], UUID] = uuid4

    @functools.cached_property
    def at(self) -> datetime:
        """The command's time: read once, so all its events (and its checks) share it."""
        return self.now()

    @property
    def meta(self) -> Metadata:
        return Metadata(
            actor=self.principal.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            command_id=self.command_id,
        )


S = TypeVar("S")


@dataclass(frozen=True)
class Loaded(Generic[S]):
    state: S
    version: int
    envelopes: list[Envelope]


def load(
    store: EventStore,
    aggregate_id: UUID,
    evolve: Callable[[S, DomainEvent], S],
    initial: S,
    envelopes: list[Envelope] | None = None,
) -> Loaded[S]:
    """Fold a stream (events this code does not know are skipped, never fatal)."""
    envelopes = store.load(aggregate_id) if envelopes is None else envelopes
    state = initial
    for envelope in envelopes:
        event = envelope.domain_event()
        if event is not None:
            state = evolve(state, event)
    version = envelopes[-1].version if envelopes else 0
    return Loaded(state, version, envelopes)


def stamp(
    ctx: Context, aggregate_id: UUID, after_version: int, events: Sequence[DomainEvent]
) -> list[Envelope]:
    at = ctx.at
    for event in events:  # the backstop of DESIGN §6: no command writes an event over 256 KiB
        check_event_size(event.type, event.model_dump_json(exclude_none=True).encode())
    return [
        pending(
            event,
            event_id=ctx.new_id(),
            aggregate_id=aggregate_id,
            version=after_version + i,
            occurred_at=at,
            meta=ctx.meta,
        )
        for i, event in enumerate(events, start=1)
    ]


# Conflicts are retried (load again, decide again); rule violations never are. Many writers on
# one aggregate (a hot agent, eight processes in the tests) can lose ten races in a row, so the
# bound is time as much as tries.
retry_on_conflict = retry(
    retry=retry_if_exception_type(ConcurrencyConflict),
    stop=stop_after_attempt(50) | stop_after_delay(10),
    wait=wait_random_exponential(multiplier=0.005, max=0.25),
    reraise=True,
)

C = TypeVar("C", bound=Command)


def parse(command_type: type[C], /, **values: object) -> C:
    """Build a command from a client's values (see ``Command.of``)."""
    return command_type.of(**values)
