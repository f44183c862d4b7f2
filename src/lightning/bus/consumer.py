"""The one consumer mechanism: ordered, tracked, deduplicated, gap-filling.

Every consumer of events (projection builders now; saga coordinators and the webhook dispatcher
later) receives ``Delivery`` objects from a transport (the in-process bus or RabbitMQ) and hands
them to a ``TrackedConsumer``, which

* drops every delivery at or below the handler's recorded position (redelivery is harmless),
* otherwise reads the events after that position, up to the newest position delivered, from the
  event store — so whatever was missed (a lost message, a restart, a queue that did not exist
  yet) is filled in, and nothing the store does not hold is ever applied,
* applies them strictly in position order, many per call when behind, and
* lets the handler record its position in the same transaction as its effects (handlers check,
  in that transaction, that they continue exactly where their tracking row says).

The event store is the source of truth: a consumer can always (re)build itself from it alone
(``catch_up``), and the transport is only the low-latency path: a delivery wakes the consumer
and says how far the store has got; the events applied are the store's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..store.envelope import Envelope
from ..store.event_store import EventStore

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0  # how often a running consumer reports that it is alive


@dataclass(frozen=True)
class Delivery:
    """A message from a transport: how far the store has got (its position) and, for the
    transport's own checks, the envelope it carried."""

    envelope: Envelope


class Handler(Protocol):
    """Applies envelopes with exactly-once effect."""

    name: str

    def position(self) -> int:
        """The last position applied (0 for none)."""

    def handle(self, envelopes: Sequence[Envelope]) -> None:
        """Apply the envelopes (in order, all above ``position()``) and record the last position,
        atomically. Raise ``IntegrityError`` if another instance recorded a position first."""


class TrackedConsumer:
    def __init__(self, handler: Handler, store: EventStore, *, batch_size: int = 500) -> None:
        self.handler = handler
        self.store = store
        self.batch_size = batch_size
        self._position: int | None = None

    @property
    def name(self) -> str:
        return self.handler.name

    def position(self) -> int:
        if self._position is None:
            self._position = self.handler.position()
        return self._position

    def deliver(self, deliveries: Sequence[Delivery]) -> int:
        """Apply everything up to the newest position delivered; return the position.

        What is applied is the *store's* copy of the events after our position, read in pages
        (one range query per batch): a message only says how far to read. So a duplicate, a
        reordering, a gap (a lost message, or a hole in the positions) or a message that this
        store never held (another deployment on the same broker, an old queue after the
        database was recreated) can neither skip an event nor apply a foreign one."""
        newest = max((d.envelope.position for d in deliveries), default=0)
        if newest <= self.position():
            return self.position()  # all already applied: redeliveries or catch-up overlap
        return self.catch_up(upto=newest)

    def catch_up(self, upto: int | None = None) -> int:
        """Apply everything the store holds beyond the recorded position (up to ``upto``)."""
        while True:
            batch = self.store.read(self.position(), self.batch_size, upto=upto)
            if batch:
                self._apply(batch)
            if len(batch) < self.batch_size:
                return self.position()

    def reset(self) -> None:
        self._position = None

    def heartbeat(self) -> None:
        """Report liveness, if the handler keeps such a record (the projection group does)."""
        beat = getattr(self.handler, "heartbeat", None)
        if beat is not None:
            beat()

    def _apply(self, envelopes: Sequence[Envelope]) -> None:
        try:
            self.handler.handle(envelopes)
        except Exception:
            # Part may have committed (a handler made of several projections), or someone else
            # recorded a position first: forget what we believed and let the next delivery or
            # catch-up start again from the recorded position.
            self._position = None
            raise
        self._position = envelopes[-1].position
