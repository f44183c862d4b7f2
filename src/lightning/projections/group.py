"""All projection builders as one consumer: one queue, one transaction per batch.

Each event then crosses the broker and is decoded once for every read model together, instead
of once per read model. Each projection keeps its own tracking row, so exactly-once holds per
projection, and each applies inside its own savepoint: one projection failing on an event rolls
back only its own rows; the others commit and carry on, and the failing one is reported
``stalled`` and retried (from the store) on the next delivery, never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..store.envelope import Envelope, format_time
from .base import Projection
from .store import ReadStore

log = logging.getLogger(__name__)

GROUP_NAME = "projections"


class ProjectionsFailed(Exception):
    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        summary = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in failures.items())
        super().__init__(summary)


class ProjectionGroup:
    """The ``Handler`` for every projection at once (see ``bus.consumer.TrackedConsumer``)."""

    name = GROUP_NAME

    def __init__(
        self,
        projections: Sequence[Projection],
        store: ReadStore,
        *,
        on_progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.projections = list(projections)
        self.store = store
        self.on_progress = on_progress
        self._statuses: dict[str, tuple[str, str | None]] = {}

    def positions(self) -> dict[str, int]:
        names = [p.name for p in self.projections]
        rows = self.store.read(
            f"SELECT application_name, notification_id FROM {self.store.tracking_table}"  # noqa: S608
            f" WHERE application_name IN ({', '.join('?' * len(names))})",
            names,
        )
        found = {r["application_name"]: int(r["notification_id"]) for r in rows}
        return {name: found.get(name, 0) for name in names}

    def position(self) -> int:
        """The group stands where its slowest projection stands."""
        return min(self.positions().values())

    def handle(self, envelopes: Sequence[Envelope]) -> None:
        positions = self.positions()
        failures: dict[str, Exception] = {}
        advanced: dict[str, int] = {}
        with self.store.transaction(commit=True) as tx:
            for projection in self.projections:
                mine = [e for e in envelopes if e.position > positions[projection.name]]
                if not mine:
                    continue
                tx.execute(f"SAVEPOINT {projection.name}")
                try:
                    projection.apply_batch(tx, mine)
                    self.store.record(tx, projection.name, mine[-1].position)
                except Exception as exc:
                    tx.execute(f"ROLLBACK TO SAVEPOINT {projection.name}")
                    failures[projection.name] = exc
                else:
                    advanced[projection.name] = mine[-1].position
                tx.execute(f"RELEASE SAVEPOINT {projection.name}")
        self._report(advanced, failures)
        if failures:
            raise ProjectionsFailed(failures)

    def _report(self, advanced: dict[str, int], failures: dict[str, Exception]) -> None:
        for name, position in advanced.items():
            if self.on_progress is not None:
                self.on_progress(name, position)
            self._set_status(name, "running", None)
        for name, exc in failures.items():
            log.error("projection %s failed: %s: %s", name, type(exc).__name__, exc)
            self._set_status(name, "stalled", f"{type(exc).__name__}: {exc}")

    def _set_status(self, name: str, status: str, error: str | None) -> None:
        if self._statuses.get(name) == (status, error):
            return
        try:
            self.store.set_status(name, status, error, format_time(datetime.now(UTC)))
            self._statuses[name] = (status, error)
        except Exception:
            log.exception("could not record the status of %s", name)
