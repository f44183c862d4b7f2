"""The durable timer scheduler (DESIGN §2): every consumer kind may schedule timers; this
module knows none of them.

Timers are events in the log (``domain/timers.py``). ``PendingTimers`` is a handler that keeps
the index of timers neither fired nor cancelled (table ``pending_timers``), in the same
transaction as its tracking position, like any read model; the consumer kind that runs the
scheduler (the sagas, in ``worker sagas``) includes it among its handlers. ``Scheduler`` reads the
index and fires every timer whose time has come — also those that came due while nothing was
running — through ``fire``, a command on the timer's own stream: two schedulers racing for one
timer collide on its version, so it fires exactly once, and firing one already fired changes
nothing. It sleeps until the earliest due time, at most ``poll`` seconds, so a timer fires within
about ``poll`` of its time plus the index's lag.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from ..store.backends import Backend, Row, Tx
from ..store.envelope import Envelope, format_time
from ..store.outages import is_transient

log = logging.getLogger(__name__)

TIMER_TYPES = frozenset({"timer.scheduled", "timer.fired", "timer.cancelled"})


class PendingTimers:
    """Handler: the index of pending timers (one row per scheduled timer until it ends)."""

    name = "timers"

    def wants(self, envelope: Envelope) -> bool:
        return envelope.type in TIMER_TYPES

    def key(self, envelope: Envelope) -> str:
        return envelope.aggregate_key

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return tx.all("SELECT * FROM pending_timers WHERE id = ?", (key,))

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        latest: dict[str, Envelope] = {}
        for envelope in envelopes:
            if self.wants(envelope):
                latest[envelope.aggregate_key] = envelope  # only the last one counts
        scheduled = [e for e in latest.values() if e.type == "timer.scheduled"]
        ended = [key for key, e in latest.items() if e.type != "timer.scheduled"]
        if ended:
            tx.execute_many("DELETE FROM pending_timers WHERE id = ?", [[k] for k in ended])
        if scheduled:
            tx.execute_many(
                "INSERT INTO pending_timers (id, saga, instance, step, due_at, payload, position)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [_row(e) for e in scheduled],
            )


def _row(envelope: Envelope) -> list[object]:
    data = envelope.data
    due = datetime.fromisoformat(str(data["due_at"]).replace("Z", "+00:00"))
    return [
        envelope.aggregate_key,
        data["saga"],
        data["instance"],
        data["step"],
        format_time(due),  # UTC, fixed width: compared as text on both backends
        json.dumps(data.get("payload", {}), separators=(",", ":")),
        envelope.position,
    ]


@dataclass(frozen=True)
class DueTimer:
    id: UUID
    saga: str
    due_at: datetime


Fire = Callable[[UUID, datetime], None]


class Scheduler:
    def __init__(
        self,
        backend: Backend,
        fire: Fire,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll: float = 0.5,
        batch: int = 100,
    ) -> None:
        self._backend = backend
        self._fire = fire
        self._clock = clock
        self.poll = poll
        self.batch = batch
        self._wake = threading.Event()

    def wake(self, *_: object) -> None:
        """A timer may have been scheduled: look again now (thread-safe)."""
        self._wake.set()

    def due(self, now: datetime) -> list[DueTimer]:
        rows = self._backend.query(
            "SELECT id, saga, due_at FROM pending_timers WHERE due_at <= ?"
            " ORDER BY due_at, id LIMIT ?",
            (format_time(now), self.batch),
        )
        return [
            DueTimer(UUID(r["id"]), r["saga"], datetime.fromisoformat(r["due_at"])) for r in rows
        ]

    def next_due(self) -> datetime | None:
        rows = self._backend.query("SELECT MIN(due_at) AS due_at FROM pending_timers", ())
        value = rows[0]["due_at"] if rows else None
        return None if value is None else datetime.fromisoformat(value)

    def fire_due(self) -> int:
        """Fire every timer due now; how many were handed to ``fire``. A timer the index still
        holds after it fired (the index lags the log) is fired again: that changes nothing."""
        fired = 0
        for timer in self.due(self._clock()):
            try:
                self._fire(timer.id, timer.due_at)
                fired += 1
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("timer %s (%s) could not fire", timer.id, timer.saga)
                    continue
                raise
        return fired

    def run(self, stop: threading.Event) -> None:
        """Fire what is due until ``stop`` is set; an outage waits and tries again."""
        while not stop.is_set():
            try:
                self.fire_due()
                wait = self._until_next()
            except Exception as exc:
                log.warning("timer scheduler: %s; trying again", exc)
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def _until_next(self) -> float:
        upcoming = self.next_due()
        if upcoming is None:
            return self.poll
        return max(0.0, min(self.poll, (upcoming - self._clock()).total_seconds()))
