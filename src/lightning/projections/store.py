"""Where read models live: the read-model tables and their tracking, in one database transaction.

``SQLiteReadStore`` and ``PostgresReadStore`` extend eventsourcing's own tracking recorders (and
are held to its ``TrackingRecorderTestCase`` in the tests). ``apply`` writes a projection's rows and
its tracking position in one transaction; the tracking insert refuses a position that is not ahead
of the recorded one, so a duplicate or out-of-order batch rolls back instead of applying twice.
The tables come from ``event_store/`` (``lightning db migrate``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from ..store.backends import Backend, PostgresBackend, Row, SQLiteBackend, Tx

__all__ = ["ReadStore", "Row", "Tx", "open_read_store"]


class ReadStore(ABC):
    """Operations every read-model database offers."""

    backend: Backend
    tracking_table: str

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Tx]:
        with self.backend.transaction(commit=commit) as tx:
            if commit and isinstance(self.backend, PostgresBackend):
                # Read models are derived data: a crash may lose the last few milliseconds of
                # them, but rows and tracking position go together (one transaction, one WAL
                # record stream), so the consumer simply re-applies those events from the
                # store. The event store's own commits stay fully synchronous.
                tx.execute("SET LOCAL synchronous_commit TO OFF")
            yield tx

    @abstractmethod
    def record(self, tx: Tx, name: str, position: int) -> None:
        """Record the tracking position inside ``tx`` (IntegrityError if not ahead)."""

    def position(self, name: str) -> int:
        rows = self.read(
            f"SELECT notification_id FROM {self.tracking_table} WHERE application_name = ?",  # noqa: S608
            (name,),
        )
        return int(rows[0]["notification_id"]) if rows else 0

    def apply(self, name: str, position: int, write: Callable[[Tx], None]) -> None:
        """Run ``write`` and record ``position`` for ``name`` in one transaction."""
        with self.transaction(commit=True) as tx:
            write(tx)
            self.record(tx, name, position)

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        with self.transaction(commit=False) as tx:
            return tx.all(sql, params)

    def reset(self, name: str, tables: Sequence[str]) -> None:
        """Empty a projection's tables and forget its position (for a rebuild)."""
        with self.transaction(commit=True) as tx:
            for table in tables:
                tx.execute(f"DELETE FROM {table}")  # noqa: S608 (names from code, not input)
            tx.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = ?",  # noqa: S608
                (name,),
            )

    def set_status(self, name: str, status: str, error: str | None, at: str) -> None:
        with self.transaction(commit=True) as tx:
            tx.execute(
                "INSERT INTO projection_status (name, status, error, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET status=excluded.status, error=excluded.error,"
                " updated_at=excluded.updated_at",
                (name, status, error, at),
            )

    def heartbeat(self, names: Sequence[str], at: str) -> None:
        """A worker is alive and applying these projections (status and error unchanged)."""
        with self.transaction(commit=True) as tx:
            tx.execute_many(
                "INSERT INTO projection_status (name, status, error, updated_at)"
                " VALUES (?, 'running', NULL, ?)"
                " ON CONFLICT (name) DO UPDATE SET updated_at=excluded.updated_at",
                [(name, at) for name in names],
            )

    def statuses(self) -> dict[str, Row]:
        return {row["name"]: row for row in self.read("SELECT * FROM projection_status")}


class SQLiteReadStore(SQLiteTrackingRecorder, ReadStore):
    tracking_table = "tracking"

    def __init__(self, backend: SQLiteBackend) -> None:
        super().__init__(backend.datastore)
        self.backend = backend

    def record(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx.cursor, Tracking(name, position))


class PostgresReadStore(PostgresTrackingRecorder, ReadStore):
    tracking_table = "projection_tracking"

    def __init__(self, backend: PostgresBackend) -> None:
        super().__init__(backend.datastore, tracking_table_name=self.tracking_table)
        self.backend = backend

    def record(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx.cursor, Tracking(name, position))


def open_read_store(backend: Backend) -> ReadStore:
    if isinstance(backend, SQLiteBackend):
        return SQLiteReadStore(backend)
    if isinstance(backend, PostgresBackend):
        return PostgresReadStore(backend)
    raise TypeError(f"no read store for {type(backend).__name__}")
