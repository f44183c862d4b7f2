"""What every command handler shares: who is acting, the clock and ids, loading a stream,
stamping envelopes, and retrying optimistic-concurrency conflicts."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, Literal, ParamSpec, TypeVar
from uuid import UUID, uuid4

from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from ..caching import cached
from ..domain.errors import ConcurrencyConflict, Conflict, Forbidden
from ..domain.limits import check_event_size
from ..domain.messages import UNKNOWN, Command, DomainEvent
from ..store.commands import CommandRecord, RepeatedCommand
from ..store.envelope import Envelope, Metadata, pending
from ..store.event_store import Events

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
    One per command: its time and correlation id are that command's.

    ``command_id`` is the id a client gave (``commandId``, ``Idempotency-Key``) or a saga
    derived: such a command is applied once per principal — the store records it with its
    events, and a repeat answers the first result. Without one, the command gets a fresh id
    (unique by construction, so not recorded)."""

    principal: Principal
    correlation_id: UUID = field(default_factory=uuid4)
    causation_id: UUID | None = None
    command_id: UUID | None = None
    now: Callable[[], datetime] = utc_now
    new_id: Callable[[], UUID] = uuid4

    @cached
    def at(self) -> datetime:
        """The command's time: read once, so all its events (and its checks) share it."""
        return self.now()

    @cached
    def id(self) -> UUID:
        """The id every event of this command carries."""
        return self.command_id or uuid4()

    @property
    def meta(self) -> Metadata:
        return Metadata(
            actor=self.principal.actor,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            command_id=self.id,
        )

    def claim(self, aggregate_id: UUID) -> CommandRecord | None:
        """The record the store keeps of this command, when it must be applied only once."""
        if self.command_id is None:
            return None
        return CommandRecord(self.principal.actor, self.command_id, aggregate_id)


def applied(store: Events, ctx: Context) -> CommandRecord | None:
    """The first result of this command, when the principal already applied its id."""
    if ctx.command_id is None:
        return None
    return store.command(ctx.principal.actor, ctx.command_id)


R = TypeVar("R")


def once(
    store: Events,
    ctx: Context,
    handle: Callable[[], R],
    answer: Callable[[CommandRecord], R],
) -> R:
    """Run a command's handler once per given id: a command this principal already applied —
    before, or meanwhile elsewhere (its append refused ours, or it won a race ours lost, on
    the agent's name say) — is ``answer``ed from its first result instead."""
    first = applied(store, ctx)
    if first is None:
        try:
            return handle()
        except Conflict as conflict:
            first = repeated(store, ctx, conflict)
    return answer(first)


def repeated(store: Events, ctx: Context, conflict: Conflict) -> CommandRecord:
    """The first result when ``conflict`` came from this command's id being applied meanwhile
    (its append was refused, or the first application won a race ours lost); else re-raise."""
    if isinstance(conflict, RepeatedCommand):
        return conflict.first
    first = applied(store, ctx)
    if first is None:
        raise conflict
    return first


def as_of(store: Events, record: CommandRecord) -> list[Envelope]:
    """The command's aggregate as the command left it: its events up to the result."""
    return [e for e in store.load(record.aggregate_id) if e.position <= record.position]


S = TypeVar("S")


@dataclass(frozen=True)
class Loaded(Generic[S]):
    state: S
    version: int
    envelopes: list[Envelope]


def load(
    store: Events,
    aggregate_id: UUID,
    evolve: Callable[[S, DomainEvent], S],
    initial: S,
    envelopes: list[Envelope] | None = None,
) -> Loaded[S]:
    """Fold a stream. An event this code does not know changes nothing but is counted
    (``UNKNOWN``), never fatal: a state's version stays its stream's."""
    envelopes = store.load(aggregate_id) if envelopes is None else envelopes
    state = initial
    for envelope in envelopes:
        state = evolve(state, envelope.domain_event() or UNKNOWN)
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
CONFLICT_ATTEMPTS = 50
# Waits of up to 0.005 * 2**n s (at most 0.25) after the n-th lost race: the first is slept by
# ``retry_on_conflict`` itself, the rest by tenacity, whose count starts at the second try
# (hence its multiplier 0.01 and one attempt fewer).
_FIRST_WAIT = 0.01
_retrying = retry(
    retry=retry_if_exception_type(ConcurrencyConflict),
    stop=stop_after_attempt(CONFLICT_ATTEMPTS - 1) | stop_after_delay(10),
    wait=wait_random_exponential(multiplier=0.01, max=0.25),
    reraise=True,
)
P = ParamSpec("P")


def retry_on_conflict(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn``, tried again (up to 50 times, about 10 s) while it loses an optimistic-concurrency
    race. The first try is a plain call: tenacity's machinery (its state copied per call) costs
    a command path that almost never conflicts more than the command itself, so it starts only
    once a race is lost."""

    @functools.wraps(fn)
    def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConcurrencyConflict:
            time.sleep(random.uniform(0, _FIRST_WAIT))
        return _retrying(fn)(*args, **kwargs)

    return attempt


C = TypeVar("C", bound=Command)


def parse(command_type: type[C], /, **values: object) -> C:
    """Build a command from a client's values (see ``Command.of``)."""
    return command_type.of(**values)
