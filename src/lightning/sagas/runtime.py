"""A saga type as a handler of the ``sagas`` consumer kind (``consumers.Handler``).

For a batch of events the handler reads the instances they concern (one query), lets the saga
decide on each event in order, sends the commands it decides through an ``EventSession`` on
the consumer's transaction — a refused command goes back to the saga, which decides what
follows (compensation) — and writes the instances back. The commands' events, the instances
and the tracking position commit together or not at all: a crash anywhere in between leaves
nothing half done, and the batch is simply applied again. An error that is not a refusal (a
bug, bad data, the database refusing) escapes, and the consumer mechanism retries the event
with backoff and then parks it with every later event of the instance (its key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from .. import failpoints
from ..domain.catalogue import Catalogue
from ..domain.errors import ConcurrencyConflict, LightningError, Unavailable
from ..services.common import Context, Principal
from ..store.backends import Row, Tx
from ..store.envelope import Envelope
from ..store.event_store import EventStore
from ..store.secrets import SecretVault
from . import instances
from .base import Instance, Refused, Saga
from .commands import Dispatcher, SagaCommand, command_id

log = logging.getLogger(__name__)

MAX_REFUSALS = 50  # refusals one event may lead to before the saga is deemed to loop


class SagaLoop(RuntimeError):
    """A saga kept deciding commands that were refused: a bug, parked like any."""


def refusal(exc: Exception) -> str | None:
    """The reason when ``exc`` is an aggregate refusing a command (a rule: the saga decides
    what follows); None for anything else (an outage, a lost race, a bug: retried, parked)."""
    if isinstance(exc, LightningError) and not isinstance(exc, Unavailable | ConcurrencyConflict):
        return exc.message
    return None


class SagaHandler:
    def __init__(
        self,
        saga: Saga[Any],
        store: EventStore,
        catalogue: Catalogue,
        clock: Callable[[], datetime],
        vault: SecretVault | None = None,
    ) -> None:
        self.saga = saga
        self.vault = vault
        self.name = saga.name
        self.store = store
        self.catalogue = catalogue
        self.clock = clock
        self.principal = Principal(actor=f"saga:{saga.name}", role="admin")

    def wants(self, envelope: Envelope) -> bool:
        return self.saga.wants(envelope)

    def key(self, envelope: Envelope) -> str:
        return self.saga.key(envelope) or ""

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return instances.rows(tx, self.name, [key])

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        keyed = [(e, key) for e in envelopes if (key := self.saga.key(e)) is not None]
        if not keyed:
            return
        current = instances.load(tx, self.saga, sorted({key for _, key in keyed}))
        dispatcher = Dispatcher(self.store.within(tx), self.catalogue, self.vault)
        changed: dict[str, tuple[Instance[Any], int]] = {}
        sent = 0
        for envelope, key in keyed:
            after, commands = self._handle(dispatcher, current.get(key), envelope, key)
            sent += commands
            if after is not None:
                current[key] = after
                changed[key] = (after, envelope.position)
        instances.save(tx, list(changed.values()), self.clock())
        if sent:
            tx.after_commit(lambda: failpoints.hit("saga.after_step"))

    def _handle(
        self, dispatcher: Dispatcher, before: Instance[Any] | None, envelope: Envelope, key: str
    ) -> tuple[Instance[Any] | None, int]:
        """The instance after ``envelope`` (None: untouched) and how many commands were sent."""
        # The saga's time is its trigger's: a replay of the log decides exactly the same.
        now = envelope.occurred_at
        decision = self.saga.decide(before, envelope, now)
        if decision is None:
            return None, 0
        instance = decision.instance
        queue = list(decision.commands)
        refused = sent = 0
        while queue:
            command = queue.pop(0)
            sent += 1
            try:
                dispatcher.send(self._context(envelope, command), self.name, key, command)
            except Exception as exc:
                reason = refusal(exc)
                if reason is None:
                    raise
                refused += 1
                if refused > MAX_REFUSALS:
                    raise SagaLoop(
                        f"{self.name} {key}: {refused} commands refused in a row"
                    ) from exc
                log.info("%s %s: %s refused: %s", self.name, key, command.step, reason)
                followed = self.saga.decide(instance, Refused(command, reason, envelope), now)
                if followed is not None:
                    instance = followed.instance
                    queue.extend(followed.commands)
        return instance, sent

    def _context(self, trigger: Envelope, command: SagaCommand) -> Context:
        """The command's identity: caused by ``trigger``, in its correlation, with an id
        derived from (saga, trigger, step). Its time is the runtime's clock, but never before
        its trigger's: a timer fired by another process whose clock runs ahead is due here too
        (a command it sends, an expiry, is decided at or after the timer's time)."""
        return Context(
            self.principal,
            correlation_id=trigger.correlation_id,
            causation_id=trigger.id,
            command_id=command_id(self.name, trigger.id, command.step),
            now=lambda: max(self.clock(), trigger.occurred_at),
        )
