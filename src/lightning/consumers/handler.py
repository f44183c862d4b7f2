"""The contract between the consumer mechanism and a consumer kind.

A *consumer kind* (the projection builders; saga coordinators and the webhook dispatcher later)
is a named set of *handlers* sharing one queue, one transaction per batch and one worker
command. Each handler keeps its own tracking position, and each event has an ordering *key* for
that handler (the aggregate for a projection, the instance for a saga): a handler that cannot
apply an event parks that key, keeping its order, while every other key carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..store.backends import Row, Tx
from ..store.envelope import Envelope


class Handler(Protocol):
    """Applies envelopes inside the consumer's transaction (read and write only through ``tx``);
    the consumer records the handler's position in the same transaction."""

    @property
    def name(self) -> str:
        """Unique among every handler of every kind (it names the tracking row)."""

    def wants(self, envelope: Envelope) -> bool:
        """Whether this handler reads the event at all."""

    def key(self, envelope: Envelope) -> str:
        """The ordering key: events of one key are applied in order, parked together."""

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        """Apply wanted envelopes in order (all new to this handler), batching reads and writes:
        a consumer that is behind hands over hundreds at once. Raise on anything it cannot
        apply; the consumer finds the event, retries it and parks its key."""

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        """What this handler holds for ``key`` (shown before and after a dry run)."""


@dataclass(frozen=True)
class ConsumerKind:
    """A consumer kind as the composition root registers it. ``handlers`` builds fresh handler
    objects (each consumer instance gets its own). ``runs_timers``: its handlers keep the index
    of pending timers (``timers.PendingTimers``), so its workers also run the scheduler that
    fires them. ``batch_size`` bounds a transaction: a kind whose handlers append events
    (sagas) holds the event store's write lock from its first append until it commits."""

    name: str
    handlers: Callable[[], Sequence[Handler]]
    description: str = ""
    runs_timers: bool = False
    batch_size: int | None = None  # events per transaction (None: the consumers' default)

    def handler_names(self) -> list[str]:
        return [h.name for h in self.handlers()]
