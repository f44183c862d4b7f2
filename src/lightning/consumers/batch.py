"""One handler's part of a batch, inside the consumer's transaction.

A handler that wants none of the batch's events just moves past them. Otherwise, on the
consumer's first try (``optimistic``), every wanted event is applied at once with no savepoint,
and a failure propagates: the consumer abandons the whole transaction and runs the batch again
carefully. Careful: apply every wanted event at once in a savepoint. If that fails (not an
outage), roll back to the savepoint and apply the events one by one to find the one that fails:
the events before it are kept, and that event is either left for a later retry (the handler
stops just before it) or, once its retries are spent, parked; then the rest go the fast way
again. An event whose key is parked is never applied: it is parked behind the first one, in
order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from .. import failpoints
from ..store.backends import Tx
from ..store.envelope import Envelope, Undecodable
from ..store.outages import LostRace, is_retryable
from . import parking
from .handler import Handler
from .parking import ParkedEvent


@dataclass(frozen=True)
class Failing:
    """A handler's failure on one event. ``retry_at`` (monotonic) is when to try it again; None
    once its retries are spent and it is to be parked."""

    position: int
    key: str
    attempts: int
    error: str
    retry_at: float | None


@dataclass
class Outcome:
    position: int  # where the handler stands after the batch (to be recorded)
    parked: list[ParkedEvent] = field(default_factory=list)
    failing: Failing | None = None


def text_safe(text: str) -> str:
    """Text any database column takes: NUL (which PostgreSQL refuses) and lone surrogates
    escaped. For keys and error messages, which a handler or its bad data may make up."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class UndecodableEvent(ValueError):
    """A stored event this version cannot read: a fault of that event, parked like any."""


def refuse_undecodable(envelopes: Sequence[Envelope]) -> None:
    for envelope in envelopes:
        if isinstance(envelope, Undecodable):
            raise UndecodableEvent(f"position {envelope.position}: {envelope.error}")


class TransactionLost(LostRace):
    """The database ended the transaction itself (SQLite does on a full disk or an I/O error):
    nothing of the batch may be kept, so it is abandoned and read again, blaming nobody."""


@contextmanager
def savepoint(tx: Tx, name: str) -> Iterator[None]:
    tx.execute(f"SAVEPOINT {name}")
    mark = tx.mark()
    try:
        yield
    except BaseException as exc:
        tx.forget_since(mark)  # what was undone must not be announced after the commit
        try:
            tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
            tx.execute(f"RELEASE SAVEPOINT {name}")
        except Exception as lost:
            raise TransactionLost(f"the transaction ended under {name}: {lost}") from exc
        raise
    tx.execute(f"RELEASE SAVEPOINT {name}")


class HandlerRun:
    def __init__(
        self,
        *,
        consumer: str,
        handler: Handler,
        tx: Tx,
        savepoint_name: str,
        parked_keys: set[str],
        start: int,
        failed: Callable[[Envelope, Exception], Failing],
        now: str,
        optimistic: bool = False,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.tx = tx
        self.savepoint = savepoint_name
        self.parked_keys = parked_keys
        self.failed = failed
        self.now = now
        self.optimistic = optimistic
        self.outcome = Outcome(start)

    def run(self, events: Sequence[Envelope]) -> Outcome:
        if not any(self.handler.wants(e) for e in events):
            self.outcome.position = events[-1].position  # nothing to apply, nothing to park
            return self.outcome
        if self.optimistic:
            self.outcome.parked += self._apply(events)
            self.outcome.position = events[-1].position
            return self.outcome
        rest = list(events)
        while rest:
            if self._attempt(rest):
                self.outcome.position = rest[-1].position
                break
            rest = self._find_failure(rest)
            if self.outcome.failing is not None:
                break
        return self.outcome

    def _attempt(self, events: Sequence[Envelope]) -> bool:
        """Apply ``events`` in a savepoint; False if they failed (rolled back)."""
        try:
            with savepoint(self.tx, self.savepoint):
                parked = self._apply(events)
        except Exception as exc:
            if is_retryable(exc):
                raise  # an outage or a race: the whole batch is retried, nobody is blamed
            return False
        self.outcome.parked += parked
        return True

    def _find_failure(self, events: Sequence[Envelope]) -> list[Envelope]:
        """Apply one by one up to the failing event. Return what is left after it when it was
        parked (to go the fast way again), nothing when it is to be retried later (the handler
        then stands just before it) or when none failed this time."""
        for index, envelope in enumerate(events):
            try:
                with savepoint(self.tx, self.savepoint):
                    parked = self._apply([envelope])
            except Exception as exc:
                if is_retryable(exc):
                    raise
                failing = self.failed(envelope, exc)
                if failing.retry_at is not None:
                    self.outcome.failing = failing
                    return []
                self.outcome.parked += self._park([envelope], failing)
                self.outcome.position = envelope.position
                return list(events[index + 1 :])
            self.outcome.parked += parked
            self.outcome.position = envelope.position
        return []

    def _apply(self, events: Sequence[Envelope]) -> list[ParkedEvent]:
        handler = self.handler
        wanted = [e for e in events if handler.wants(e)]
        ready, waiting = wanted, []
        if self.parked_keys:  # keys are worked out only when some are parked (or a failpoint)
            ready = [e for e in wanted if self._key(e) not in self.parked_keys]
            waiting = [e for e in wanted if self._key(e) in self.parked_keys]
        if ready:
            refuse_undecodable(ready)
            if failpoints.armed():
                failpoints.check_apply(handler.name, {self._key(e) for e in ready})
            handler.apply_batch(self.tx, ready)
        return self._park(waiting, None)

    def _key(self, envelope: Envelope) -> str:
        return text_safe(self.handler.key(envelope))

    def _park(self, events: Sequence[Envelope], failing: Failing | None) -> list[ParkedEvent]:
        rows = [
            ParkedEvent(
                consumer=self.consumer,
                handler=self.handler.name,
                key=self._key(e),
                position=e.position,
                type=e.type,
                error=None if failing is None else failing.error,
                attempts=0 if failing is None else failing.attempts,
                parked_at=self.now,
            )
            for e in events
        ]
        if rows:
            parking.park(self.tx, rows)
            self.parked_keys.update(r.key for r in rows)
        return rows
