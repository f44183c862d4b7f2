"""The event store inside a write transaction someone else owns: a consumer's batch.

A saga (a consumer kind) sends commands while it applies events: its commands' events, its
own state and its tracking position must commit together or not at all (STYLE 15), so it loads
and appends through an ``EventSession`` on the consumer's transaction instead of the
group-commit writer. The same guards hold as for any append: the recorder's own insert (on
PostgreSQL its table lock, so positions keep commit order), the per-aggregate version check,
and a command id recorded once per principal. Each append runs in a savepoint, so a collision
undoes that append alone and the transaction carries on; an append also makes the transaction's
commit durable again (consumers otherwise commit asynchronously on PostgreSQL: what they write
is derived from the log, but events are the log). Listeners (the in-process bus) hear of the
events once the transaction has committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError as StoreIntegrityError

from ..domain.errors import ConcurrencyConflict
from .backends import PostgresBackend, Tx
from .commands import SELECT_COMMAND, Claim, CommandRecord, RepeatedCommand, record_of
from .envelope import Envelope

if TYPE_CHECKING:
    from .event_store import EventStore

_COLLISIONS = (psycopg.IntegrityError, sqlite3.IntegrityError, StoreIntegrityError)


@contextmanager
def _savepoint(tx: Tx, name: str) -> Iterator[None]:
    tx.execute(f"SAVEPOINT {name}")
    mark = tx.mark()
    try:
        yield
    except BaseException:
        tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
        tx.execute(f"RELEASE SAVEPOINT {name}")
        tx.forget_since(mark)
        raise
    tx.execute(f"RELEASE SAVEPOINT {name}")


class EventSession:
    def __init__(self, store: EventStore, tx: Tx) -> None:
        self.store = store
        self.tx = tx
        self.backend = store.backend

    def load(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Envelope]:
        notifications = self.backend.read_stream_in(
            self.tx,
            aggregate_id,
            to_version=to_version,
            after_version=after_version,
            after_position=after_position,
            limit=limit,
        )
        return [Envelope.from_notification(n) for n in notifications]

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """The session's own transaction (in a savepoint: a failure undoes only these rows)."""
        with _savepoint(self.tx, "lightning_rows"):
            yield self.tx

    def command(self, principal: str, command_id: UUID) -> CommandRecord | None:
        row = self.tx.one(SELECT_COMMAND, (principal, str(command_id)))
        return None if row is None else record_of(row)

    def append(
        self, envelopes: Sequence[Envelope], command: CommandRecord | None = None
    ) -> list[Envelope]:
        """As ``EventStore.append``, inside the transaction."""
        if not envelopes:
            return []
        stored = [e.to_stored_event() for e in envelopes]
        claims = [Claim(command, last_event=len(stored) - 1)] if command is not None else []
        try:
            with _savepoint(self.tx, "lightning_append"):
                if isinstance(self.backend, PostgresBackend):
                    self.tx.execute("SET LOCAL synchronous_commit TO ON")
                positions = self.backend.insert_in(self.tx, stored, claims)
        except _COLLISIONS as exc:
            first = None if command is None else self.command(command.principal, command.command_id)
            if first is not None:
                raise RepeatedCommand(first) from None
            raise ConcurrencyConflict("another command changed the same aggregate first") from exc
        last = positions[-1]
        self.tx.after_commit(lambda: self.store.committed(last))
        return [
            e.model_copy(update={"position": p}) for e, p in zip(envelopes, positions, strict=True)
        ]
