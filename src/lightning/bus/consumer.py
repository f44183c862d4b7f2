"""The one consumer mechanism: ordered, tracked, deduplicated, gap-filling.

Every consumer of events (projection builders now; saga coordinators and the webhook dispatcher
later) receives ``Delivery`` objects from a transport (the in-process bus or RabbitMQ) and hands
them to a ``TrackedConsumer``, which

* drops every envelope at or below the handler's recorded position (redelivery is harmless),
* notices a gap — the publisher says it sent position P before this one, and P is ahead of what
  the handler has applied — and reads the missing events from the event store first,
* applies envelopes strictly in position order, many per call when behind, and
* lets the handler record its position in the same transaction as its effects.

The event store is the source of truth: a consumer can always (re)build itself from it alone
(``catch_up``), and the transport is only the low-latency path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..store.envelope import Envelope
from ..store.event_store import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    envelope: Envelope
    # The position the publisher published just before this one (None: unknown, so check).
    previous: int | None = None


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
        """Apply what is new in ``deliveries``, filling gaps from the store; return the position."""
        last = self.position()
        pending: list[Envelope] = []
        for delivery in deliveries:
            envelope = delivery.envelope
            if envelope.position <= last:
                continue  # already applied: a redelivery or an overlap with a catch-up
            if delivery.previous is None or delivery.previous > last:
                pending.extend(
                    self.store.iterate(last, page=self.batch_size, upto=envelope.position - 1)
                )
            pending.append(envelope)
            last = envelope.position
        for start in range(0, len(pending), self.batch_size):
            self._apply(pending[start : start + self.batch_size])
        return self.position()

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
