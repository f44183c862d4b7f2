"""All projection builders as one consumer: one queue, one transaction per batch.

Each event then crosses the broker and is decoded once for every read model together, instead
of once per read model. Each projection keeps its own tracking row, so exactly-once holds per
projection, and each applies inside its own savepoint.

Inside the transaction each projection's tracking row is read (locked on PostgreSQL, so a second
worker waits instead of racing) and the batch must continue exactly from it: if the store holds
events between the row and the batch (the row was rolled back by a database crash, or reset by
a rebuild, while a worker ran on), those are applied first. So a projection never moves past an
event it has not applied.

A projection that fails on an event is rolled back to its savepoint and reported ``stalled``;
it is left out of the group's position so the others carry on, and it is retried from the store
(a bounded page per batch, and in full whenever the worker restarts) — never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..store.backends import TRANSIENT
from ..store.envelope import Envelope, format_time
from ..store.event_store import EventStore
from .base import Projection
from .store import ReadStore, Tx

log = logging.getLogger(__name__)

GROUP_NAME = "projections"
RETRY_PAGE = 500  # events a stalled (or behind) projection is given per batch


class ProjectionGroup:
    """The ``Handler`` for every projection at once (see ``bus.consumer.TrackedConsumer``)."""

    name = GROUP_NAME

    def __init__(
        self,
        projections: Sequence[Projection],
        store: ReadStore,
        events: EventStore,
        *,
        on_progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.projections = list(projections)
        self.store = store
        self.events = events
        self.on_progress = on_progress
        self.stalled: dict[str, str] = {}
        self._statuses: dict[str, tuple[str, str | None]] = {}

    def _positions(self, tx: Tx, *, lock: bool) -> dict[str, int]:
        names = [p.name for p in self.projections]
        sql = (
            f"SELECT application_name, notification_id FROM {self.store.tracking_table}"  # noqa: S608
            f" WHERE application_name IN ({', '.join('?' * len(names))})"
        )
        if lock and self.store.backend.kind == "postgres":
            sql += " FOR UPDATE"
        found = {r["application_name"]: int(r["notification_id"]) for r in tx.all(sql, names)}
        return {name: found.get(name, 0) for name in names}

    def positions(self) -> dict[str, int]:
        with self.store.transaction(commit=False) as tx:
            return self._positions(tx, lock=False)

    def position(self) -> int:
        """Where the slowest healthy projection stands (stalled ones are retried separately)."""
        positions = self.positions()
        healthy = [p for name, p in positions.items() if name not in self.stalled]
        return min(healthy or positions.values())

    def handle(self, envelopes: Sequence[Envelope]) -> None:
        failures: dict[str, Exception] = {}
        advanced: dict[str, int] = {}
        with self.store.transaction(commit=True) as tx:
            positions = self._positions(tx, lock=True)
            for projection in self.projections:
                mine = self._continuing(positions[projection.name], envelopes)
                if not mine:
                    continue
                tx.execute(f"SAVEPOINT {projection.name}")
                try:
                    projection.apply_batch(tx, mine)
                    self.store.record(tx, projection.name, mine[-1].position)
                except TRANSIENT:
                    raise  # the database, not this projection: retry the whole batch later
                except Exception as exc:
                    tx.execute(f"ROLLBACK TO SAVEPOINT {projection.name}")
                    failures[projection.name] = exc
                else:
                    advanced[projection.name] = mine[-1].position
                tx.execute(f"RELEASE SAVEPOINT {projection.name}")
        self._report(advanced, failures)

    def _continuing(self, tracked: int, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """The envelopes this projection applies next: exactly those after ``tracked``, with
        anything the store holds between ``tracked`` and the batch read in first."""
        mine = [e for e in envelopes if e.position > tracked]
        if not mine or mine[0].position == tracked + 1:
            return mine
        missing = self.events.read(tracked, RETRY_PAGE + 1, upto=mine[0].position - 1)
        if len(missing) > RETRY_PAGE:
            return missing[:RETRY_PAGE]  # far behind: a page now, the rest in later batches
        return missing + mine

    def heartbeat(self) -> None:
        """Tell ``projections status`` that a worker is alive for every projection here."""
        self.store.heartbeat([p.name for p in self.projections], format_time(datetime.now(UTC)))

    def _report(self, advanced: dict[str, int], failures: dict[str, Exception]) -> None:
        for name, position in advanced.items():
            self.stalled.pop(name, None)
            if self.on_progress is not None:
                self.on_progress(name, position)
            self._set_status(name, "running", None)
        for name, exc in failures.items():
            error = f"{type(exc).__name__}: {exc}"
            if name not in self.stalled:
                log.error("projection %s stalled: %s", name, error)
            self.stalled[name] = error
            self._set_status(name, "stalled", error)

    def _set_status(self, name: str, status: str, error: str | None) -> None:
        if self._statuses.get(name) == (status, error):
            return
        try:
            self.store.set_status(name, status, error, format_time(datetime.now(UTC)))
            self._statuses[name] = (status, error)
        except Exception:
            log.exception("could not record the status of %s", name)
