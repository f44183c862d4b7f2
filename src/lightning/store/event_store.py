"""The event store facade used by command handlers, read tools and consumers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from eventsourcing.persistence import Notification

from .backends import Backend, Tx
from .commands import CommandRecord
from .envelope import Envelope, decode
from .group_commit import GroupCommitWriter

if TYPE_CHECKING:
    from .session import EventSession


class Events(Protocol):
    """What command handlers need of an event store: the ``EventStore`` itself, or an
    ``EventSession`` inside a consumer's transaction."""

    def load(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Envelope]: ...

    def append(
        self, envelopes: Sequence[Envelope], command: CommandRecord | None = None
    ) -> list[Envelope]: ...

    def command(self, principal: str, command_id: UUID) -> CommandRecord | None: ...

    def transaction(self) -> AbstractContextManager[Tx]:
        """A write transaction for rows a command's events refer to (a sealed secret): the
        store's own, committed before the events are appended; a session's, committed with
        them."""
        ...


class EventStore:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_events: int = 1000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self._on_commit = on_commit
        self._writer = GroupCommitWriter(
            backend.recorder,
            max_batch_events=max_batch_events,
            on_commit=on_commit,
            find_command=backend.command,
        )

    def append(
        self, envelopes: Sequence[Envelope], command: CommandRecord | None = None
    ) -> list[Envelope]:
        """Store one command's events atomically; return them with their positions.

        With ``command`` (its position is ignored: the store sets it to the last event's), its
        row is written in the same transaction, and an id this principal already applied
        raises ``RepeatedCommand`` with the first result, appending nothing. Without events
        nothing is stored, the command neither."""
        stored = [e.to_stored_event() for e in envelopes]
        positions = self._writer.append(stored, command)
        return [
            e.model_copy(update={"position": p}) for e, p in zip(envelopes, positions, strict=True)
        ]

    def load(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Envelope]:
        """One aggregate's events in version order (see ``Backend.read_stream`` for the
        bounds)."""
        notifications = self.backend.read_stream(
            aggregate_id,
            to_version=to_version,
            after_version=after_version,
            after_position=after_position,
            limit=limit,
        )
        return [Envelope.from_notification(n) for n in notifications]

    def read(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        upto: int | None = None,
        types: Sequence[str] = (),
        tolerant: bool = False,
    ) -> list[Envelope]:
        """Events with ``after < position <= upto`` in position order, at most ``limit``.
        ``tolerant``: an event this version cannot read comes back as ``Undecodable`` (for
        consumers, which park it) instead of failing the whole read."""
        notifications = self.backend.read_log(after, limit, upto=upto, types=types)
        if tolerant:
            return [decode(n) for n in notifications]
        return [Envelope.from_notification(n) for n in notifications]

    def read_in(self, tx: Tx, after: int, limit: int, *, upto: int | None = None) -> list[Envelope]:
        """A tolerant ``read`` on the connection of the open transaction ``tx`` (see
        Backend.read_log_in)."""
        return [decode(n) for n in self.backend.read_log_in(tx, after, limit, upto=upto)]

    def read_later(
        self, tx: Tx, after: int, limit: int, *, upto: int | None = None
    ) -> Callable[[], list[Envelope]]:
        """``read_in``, sent now and read when called: in a pipelined transaction it travels
        with the queries sent before it is read (``Tx.later``)."""
        notifications = self.backend.read_log_later(tx, after, limit, upto=upto)
        return lambda: [decode(n) for n in notifications()]

    def read_at(self, positions: Sequence[int]) -> list[Envelope]:
        """The events at these positions, in position order (tolerant, as ``read_in``)."""
        return [decode(n) for n in self.backend.read_positions(positions)]

    def read_at_in(self, tx: Tx, positions: Sequence[int]) -> list[Envelope]:
        """``read_at`` on the connection of the open transaction ``tx``."""
        return [decode(n) for n in self.backend.read_positions_in(tx, positions)]

    def read_stored(self, after: int = 0, limit: int = 1000) -> list[Notification]:
        """Like ``read`` but as stored (bytes), for code that forwards events without reading
        them (the relay)."""
        return list(self.backend.read_log(after, limit))

    def iterate(
        self, after: int = 0, *, page: int = 1000, upto: int | None = None
    ) -> Iterator[Envelope]:
        """Every event after ``after`` (tolerant: see ``read``), a page at a time."""
        while True:
            batch = self.read(after, page, upto=upto, tolerant=True)
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1].position

    def get(self, position: int) -> Envelope | None:
        found = self.read(position - 1, 1, upto=position)
        return found[0] if found else None

    def command(self, principal: str, command_id: UUID) -> CommandRecord | None:
        """The command ``principal`` applied with ``command_id``, with its result position;
        None if it has not been (or is still being) applied."""
        return self.backend.command(principal, command_id)

    def transaction(self) -> AbstractContextManager[Tx]:
        return self.backend.transaction()

    def within(self, tx: Tx) -> EventSession:
        """This store inside an open write transaction ``tx``: what a consumer's handler (a
        saga) appends commits with its own effects and tracking position, or not at all."""
        from .session import EventSession

        return EventSession(self, tx)

    def committed(self, position: int) -> None:
        """Events up to ``position`` were committed outside the group-commit writer (by an
        ``EventSession``): tell the listeners (the in-process bus)."""
        if self._on_commit is not None:
            self._on_commit(position)

    def max_position(self) -> int:
        return self.backend.max_position()

    def close(self) -> None:
        self._writer.close()
        self.backend.close()
