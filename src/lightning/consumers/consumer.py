"""The one consumer mechanism: ordered, tracked, deduplicated, gap-filling, parking.

A consumer (one kind: the projection builders, say) receives ``Delivery`` objects from a
transport (the in-process bus or RabbitMQ). A delivery only wakes it and says how far the store
has got; the consumer then

* drops every delivery at or below its handlers' recorded positions (redelivery is harmless),
* reads the events after those positions, up to the newest position delivered, from the event
  store — so whatever was missed (a lost message, a restart, a queue that did not exist yet) is
  filled in, and nothing the store does not hold is ever applied,
* applies them in position order, many per transaction when behind: one transaction per batch
  for all its handlers, each handler's tracking row locked and continued exactly, and its
  effects and position committed together. A batch is first tried the quick way — no
  savepoints, and on PostgreSQL its statements pipelined (BEGIN, the tracking locks, the parked
  keys and the events in one round trip, writes sent with the next read: a batch of agent
  events takes 4 round trips where it took 10) — since almost always every handler applies its
  events; if anything fails that is not an outage, that transaction is rolled back and the
  batch is run again with a savepoint per handler and no pipelining, which keeps the others'
  work while the failing event is found (``batch``) and reports each error where it happened.

A handler that fails on an event (not an outage: a constraint, bad data, a bug) stops just
before it and tries it again with backoff, while the other handlers carry on; once its retries
are spent the event is parked with every later event of the same key, in order, and the handler
moves on. Parked events wait for an operator (``operations.retry_parked`` / ``skip_parked``).
Outages and lost races abort the batch, blame nothing and are retried by the loops.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..bus.delivery import Delivery
from ..store.envelope import Envelope, format_time
from ..store.event_store import EventStore
from ..store.outages import is_retryable
from . import parking
from .batch import Failing, HandlerRun, Outcome, text_safe
from .handler import Handler
from .read_ahead import PageReader
from .tracking import TrackingStore, Tx

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0  # how often a running consumer reports that it is alive
READ_AHEAD = 500  # events a handler that is behind the batch is given at once


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing event is tried again before it is parked, and how long apart."""

    retries: int = 5
    first_delay: float = 0.1
    longest_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.longest_delay, self.first_delay * 2 ** (attempt - 1)))


def now_text() -> str:
    return format_time(datetime.now(UTC))


class Consumer:
    def __init__(
        self,
        name: str,
        handlers: Sequence[Handler],
        tracking: TrackingStore,
        events: EventStore,
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = 500,
        on_progress: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        read_ahead: PageReader | None = None,
        pipelined: bool = True,
    ) -> None:
        """``read_ahead`` (for rebuilds): the log is read outside the transactions, the next
        page while a batch is applied. ``pipelined=False``: no batch is pipelined, so that
        large writes may go by COPY (``Tx.upsert_many``) — what a rebuild's batches are."""
        self.name = name
        self.handlers = list(handlers)
        self.names = [h.name for h in self.handlers]
        self.tracking = tracking
        self.events = events
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.on_progress = on_progress
        self._clock = clock
        self._read_ahead = read_ahead
        self._pipelined = pipelined
        self._positions: dict[str, int] | None = None
        self._failing: dict[str, Failing] = {}
        self._reported: dict[str, tuple[str, str | None]] = {}

    # ---- where it stands ----------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        if self._positions is None:
            self._positions = self.tracking.read_positions(self.names)
        return self._positions

    def position(self) -> int:
        """Where the slowest handler that is not waiting to retry stands."""
        positions = self.positions()
        now = self._clock()
        due = [p for name, p in positions.items() if not self._backing_off(name, now)]
        return min(due) if due else max(positions.values(), default=0)

    def next_retry(self) -> float | None:
        """When (monotonic) a failing handler is due to try its event again."""
        due = [f.retry_at for f in self._failing.values() if f.retry_at is not None]
        return min(due, default=None)

    def failing(self) -> dict[str, Failing]:
        return dict(self._failing)

    def reset(self) -> None:
        """Forget what it believed of the positions (read them again before the next batch)."""
        self._positions = None

    def _backing_off(self, name: str, now: float) -> bool:
        failing = self._failing.get(name)
        return failing is not None and failing.retry_at is not None and failing.retry_at > now

    # ---- applying ----------------------------------------------------------------------------

    def deliver(self, deliveries: Sequence[Delivery]) -> int:
        """Apply everything up to the newest position delivered; return the position."""
        newest = max((d.position for d in deliveries), default=0)
        if newest <= self.position():
            return self.position()  # all applied already: redeliveries or catch-up overlap
        return self.catch_up(upto=newest)

    def catch_up(self, upto: int | None = None) -> int:
        """Apply what the store holds beyond the handlers' positions (up to ``upto``)."""
        while True:
            start = self.position()
            batch, advanced = self._apply(start, upto)
            now = self.position()
            if not batch:
                return now
            if now >= batch[-1].position and len(batch) < self.batch_size:
                return now  # everything the store held, up to ``upto``
            if not advanced and now <= start:
                return now  # nothing moved: what is left waits for a handler's retry

    def _apply(self, start: int, upto: int | None) -> tuple[Sequence[Envelope], bool]:
        ahead = None if self._read_ahead is None else self._read_ahead.take(start, upto)
        try:
            return self._apply_once(start, upto, optimistic=True, ahead=ahead)
        except Exception as exc:
            if is_retryable(exc):
                raise  # an outage or a race: the loops retry the batch, nobody is blamed
        return self._apply_once(start, upto, optimistic=False, ahead=ahead)

    def _apply_once(
        self,
        start: int,
        upto: int | None,
        *,
        optimistic: bool,
        ahead: Sequence[Envelope] | None = None,
    ) -> tuple[Sequence[Envelope], bool]:
        """Read the events after ``start`` (up to ``upto``) and apply them, in one transaction
        whose first round trip takes the tracking locks, then reads the parked keys and the
        events (sent together, run in that order) — unless they were read ``ahead``."""
        now, at = self._clock(), now_text()
        outcomes: dict[str, Outcome] = {}
        try:
            pipelined = optimistic and self._pipelined
            with self.tracking.transaction(commit=True, pipelined=pipelined) as tx:
                locking = self.tracking.locking(tx, self.names)
                parking_later = parking.parked_keys_later(tx, self.name)
                reading = (
                    self.events.read_later(tx, start, self.batch_size, upto=upto)
                    if ahead is None
                    else lambda: list(ahead)
                )
                tracked, created = locking()
                parked = parking_later()
                if created:  # read before the new rows were locked: read again under them
                    parked = parking.parked_keys(tx, self.name)
                batch = reading()
                self._forget_failures_behind(tracked)
                for index, handler in enumerate(self.handlers):
                    if self._backing_off(handler.name, now):
                        continue
                    events = self._continuing(tx, tracked[handler.name], batch)
                    if not events:
                        continue
                    outcomes[handler.name] = HandlerRun(
                        consumer=self.name,
                        handler=handler,
                        tx=tx,
                        savepoint_name=f"handler_{index}",
                        parked_keys=parked.setdefault(handler.name, set()),
                        start=tracked[handler.name],
                        failed=functools.partial(self._failed, handler),
                        now=at,
                        optimistic=optimistic,
                    ).run(events)
                moved = {
                    name: o.position for name, o in outcomes.items() if o.position > tracked[name]
                }
                self.tracking.record_all(tx, moved)
        except BaseException:
            self._positions = None
            raise
        self._committed(tracked, outcomes)
        return batch, bool(moved)

    def _continuing(self, tx: Tx, tracked: int, batch: Sequence[Envelope]) -> list[Envelope]:
        """The events a handler applies next: exactly those after ``tracked``, with anything the
        store holds between ``tracked`` and the batch read in first (its row was rolled back by
        a database crash, or reset by a rebuild, while this consumer ran on)."""
        mine = [e for e in batch if e.position > tracked]
        if not mine or mine[0].position == tracked + 1:
            return mine
        missing = self.events.read_in(tx, tracked, READ_AHEAD + 1, upto=mine[0].position - 1)
        if len(missing) > READ_AHEAD:
            return missing[:READ_AHEAD]  # far behind: a page now, the rest in later batches
        return missing + mine

    def _failed(self, handler: Handler, envelope: Envelope, exc: Exception) -> Failing:
        previous = self._failing.get(handler.name)
        attempts = 1
        if previous is not None and previous.position == envelope.position:
            attempts = previous.attempts + 1
        error = text_safe(f"{type(exc).__name__}: {exc}")
        spent = attempts > self.policy.retries
        failing = Failing(
            position=envelope.position,
            key=text_safe(handler.key(envelope)),
            attempts=attempts,
            error=error,
            retry_at=None if spent else self._clock() + self.policy.delay(attempts),
        )
        self._failing[handler.name] = failing
        if spent:
            log.error(
                "%s/%s: parking %s from position %d (%s) after %d attempts: %s",
                self.name,
                handler.name,
                failing.key,
                envelope.position,
                envelope.type,
                attempts,
                error,
            )
        else:
            log.warning(
                "%s/%s: position %d (%s, key %s) failed, attempt %d of %d; retrying in %.3gs: %s",
                self.name,
                handler.name,
                envelope.position,
                envelope.type,
                failing.key,
                attempts,
                self.policy.retries + 1,
                self.policy.delay(attempts),
                error,
            )
        return failing

    def _forget_failures_behind(self, positions: dict[str, int]) -> None:
        """A failing event a handler now stands at or past was applied or parked (by this
        consumer, or by another process: a standby, an operator): nothing to retry any more."""
        for name, position in positions.items():
            failing = self._failing.get(name)
            if failing is not None and position >= failing.position:
                del self._failing[name]

    def _committed(self, tracked: dict[str, int], outcomes: dict[str, Outcome]) -> None:
        self._positions = tracked | {name: o.position for name, o in outcomes.items()}
        self._forget_failures_behind(self._positions)
        for name, outcome in outcomes.items():
            if outcome.position > tracked[name] and self.on_progress is not None:
                self.on_progress(name, outcome.position)
            if name in self._failing:
                f = self._failing[name]
                self._report(
                    name,
                    "retrying",
                    f"{f.error} (position {f.position}, key {f.key}, attempt {f.attempts} of"
                    f" {self.policy.retries + 1})",
                )
            else:
                self._report(name, "running", None)

    # ---- reporting ---------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Tell status readers that a worker is alive for every handler here."""
        self.tracking.heartbeat(self.name, self.names, now_text())

    def _report(self, name: str, status: str, error: str | None) -> None:
        if self._reported.get(name) == (status, error):
            return
        try:
            self.tracking.set_status(self.name, name, status, error, now_text())
            self._reported[name] = (status, error)
        except Exception as exc:  # the next batch reports again; its effects are committed
            log.warning("could not record the status of %s: %s", name, exc)
