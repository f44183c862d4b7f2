"""The event store facade used by command handlers, read tools and consumers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from uuid import UUID

from eventsourcing.persistence import Notification

from .backends import Backend, Tx
from .envelope import Envelope, decode
from .group_commit import GroupCommitWriter


class EventStore:
    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_events: int = 1000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self._writer = GroupCommitWriter(
            backend.recorder, max_batch_events=max_batch_events, on_commit=on_commit
        )

    def append(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Store one command's events atomically; return them with their positions."""
        positions = self._writer.append([e.to_stored_event() for e in envelopes])
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

    def max_position(self) -> int:
        return self.backend.max_position()

    def close(self) -> None:
        self._writer.close()
        self.backend.close()
