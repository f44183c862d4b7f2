"""Where every handler stands, and how it is doing, in the database its effects live in.

``SQLiteTrackingStore`` and ``PostgresTrackingStore`` extend eventsourcing's own tracking
recorders (and are held to its ``TrackingRecorderTestCase`` in the tests). A handler's effects and
its tracking position are written in one transaction; the tracking insert refuses a position that
is not ahead of the recorded one, so a duplicate or out-of-order batch rolls back instead of
applying twice. The tables come from ``event_store/`` (``lightning db migrate``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from ..store.backends import Backend, PostgresBackend, Row, SQLiteBackend, Tx
from ..store.outages import LostRace

__all__ = ["Row", "TrackingStore", "Tx", "open_tracking_store"]


class TrackingStore(ABC):
    backend: Backend
    tracking_table: str

    @contextmanager
    def transaction(self, *, commit: bool, durable: bool = False) -> Iterator[Tx]:
        """A transaction for consumers. Not ``durable`` (the default for what consumers derive
        from the log), a PostgreSQL commit does not wait for the disk; an operator's action
        (retry, skip) is ``durable``."""
        with self.backend.transaction(commit=commit) as tx:
            if commit and not durable and isinstance(self.backend, PostgresBackend):
                # What consumers write is derived from the log: a crash may lose the last few
                # milliseconds of it, but effects and tracking position go together (one
                # transaction), so the consumer simply applies those events again. The event
                # store's own commits stay fully synchronous.
                tx.execute("SET LOCAL synchronous_commit TO OFF")
            yield tx

    @abstractmethod
    def _insert(self, tx: Tx, name: str, position: int) -> None: ...

    def record(self, tx: Tx, name: str, position: int) -> None:
        """Record ``name``'s position inside ``tx``; LostRace if it is not ahead (another process
        recorded one first)."""
        try:
            self._insert(tx, name, position)
        except IntegrityError as exc:
            raise LostRace(f"{name}: position {position} is not ahead of the recorded one") from exc

    def positions(self, tx: Tx, names: Sequence[str], *, lock: bool) -> dict[str, int]:
        """Each handler's recorded position (0 for none). With ``lock``, the rows stay locked
        until ``tx`` ends, so two processes never apply the same handler's batch at once — on
        PostgreSQL a missing row is created first (``FOR UPDATE`` locks no row that does not
        exist); SQLite's write transactions are serialised whole (``BEGIN IMMEDIATE``)."""
        if not names:
            return {}
        sql = (
            f"SELECT application_name, notification_id FROM {self.tracking_table}"  # noqa: S608
            f" WHERE application_name IN ({', '.join('?' * len(names))})"
        )
        if lock and isinstance(self.backend, PostgresBackend):
            tx.execute(
                f"INSERT INTO {self.tracking_table} (application_name, notification_id)"  # noqa: S608
                f" VALUES {', '.join('(?, 0)' for _ in names)} ON CONFLICT DO NOTHING",
                sorted(names),
            )
            sql += " ORDER BY application_name FOR UPDATE"
        rows = tx.all(sql, names)
        found = {r["application_name"]: int(r["notification_id"]) for r in rows}
        return {name: found.get(name, 0) for name in names}

    def read_positions(self, names: Sequence[str]) -> dict[str, int]:
        with self.transaction(commit=False) as tx:
            return self.positions(tx, names, lock=False)

    def position(self, name: str) -> int:
        return self.read_positions([name])[name]

    def read(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return self.backend.query(sql, params)

    def reset(self, tx: Tx, name: str, tables: Sequence[str]) -> None:
        """Empty a handler's tables and forget its position (for a rebuild)."""
        for table in tables:
            tx.execute(f"DELETE FROM {table}")  # noqa: S608 (names from code, not input)
        tx.execute(
            f"DELETE FROM {self.tracking_table} WHERE application_name = ?",  # noqa: S608
            (name,),
        )

    # ---- health, as workers report it ------------------------------------------------------

    def set_status(self, consumer: str, name: str, status: str, error: str | None, at: str) -> None:
        with self.transaction(commit=True) as tx:
            tx.execute(
                "INSERT INTO consumer_status (name, consumer, status, error, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " consumer=excluded.consumer, status=excluded.status, error=excluded.error,"
                " updated_at=excluded.updated_at",
                (name, consumer, status, error, at),
            )

    def heartbeat(self, consumer: str, names: Sequence[str], at: str) -> None:
        """A worker is alive and running these handlers (status and error unchanged)."""
        with self.transaction(commit=True) as tx:
            tx.execute_many(
                "INSERT INTO consumer_status (name, consumer, status, error, updated_at)"
                " VALUES (?, ?, 'running', NULL, ?)"
                " ON CONFLICT (name) DO UPDATE SET updated_at=excluded.updated_at",
                [(name, consumer, at) for name in names],
            )

    def status_rows(self) -> dict[str, Row]:
        return {row["name"]: row for row in self.read("SELECT * FROM consumer_status")}


class SQLiteTrackingStore(SQLiteTrackingRecorder, TrackingStore):
    tracking_table = "tracking"

    def __init__(self, backend: SQLiteBackend) -> None:
        super().__init__(backend.datastore)
        self.backend = backend

    def _insert(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx.cursor, Tracking(name, position))


class PostgresTrackingStore(PostgresTrackingRecorder, TrackingStore):
    tracking_table = "consumer_tracking"

    def __init__(self, backend: PostgresBackend) -> None:
        super().__init__(backend.datastore, tracking_table_name=self.tracking_table)
        self.backend = backend

    def _insert(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx.cursor, Tracking(name, position))


def open_tracking_store(backend: Backend) -> TrackingStore:
    if isinstance(backend, SQLiteBackend):
        return SQLiteTrackingStore(backend)
    if isinstance(backend, PostgresBackend):
        return PostgresTrackingStore(backend)
    raise TypeError(f"no tracking store for {type(backend).__name__}")
