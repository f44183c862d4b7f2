"""Where read models live: the read-model tables and their tracking, in one database transaction.

``SQLiteReadStore`` and ``PostgresReadStore`` extend eventsourcing's own tracking recorders (and
are held to its ``TrackingRecorderTestCase`` in the tests). ``apply`` writes a projection's rows and
its tracking position in one transaction; the tracking insert refuses a position that is not ahead
of the recorded one, so a duplicate or out-of-order batch rolls back instead of applying twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

from ..store.backends import Backend, PostgresBackend, SQLiteBackend

Row = dict[str, Any]


class Tx:
    """A cursor with one SQL dialect: ``?`` placeholders, rows as dicts."""

    def __init__(self, cursor: Any, *, postgres: bool) -> None:
        self._cursor = cursor
        self._postgres = postgres

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        if self._postgres:
            sql = sql.replace("?", "%s")
        self._cursor.execute(sql, tuple(params))

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        self.execute(sql, params)
        row = self._cursor.fetchone()
        return None if row is None else _as_dict(row)

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self.execute(sql, params)
        return [_as_dict(row) for row in self._cursor.fetchall()]


def _as_dict(row: Any) -> Row:
    return dict(row)  # sqlite3.Row and psycopg's dict rows both map column -> value


class Applier(Protocol):
    name: str

    def apply(self, tx: Tx, envelope: Any) -> None: ...


STATUS_DDL = (
    "CREATE TABLE IF NOT EXISTS projection_status ("
    " name TEXT PRIMARY KEY, status TEXT NOT NULL, error TEXT, updated_at TEXT NOT NULL)"
)


class ReadStore(ABC):
    """Operations every read-model database offers."""

    postgres: bool

    @abstractmethod
    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Tx]: ...

    @abstractmethod
    def record(self, tx: Tx, name: str, position: int) -> None:
        """Record the tracking position inside ``tx`` (IntegrityError if not ahead)."""

    @abstractmethod
    def position(self, name: str) -> int: ...

    def create(self, ddl: Sequence[str]) -> None:
        with self.transaction(commit=True) as tx:
            for statement in (STATUS_DDL, *ddl):
                tx.execute(statement)

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
            self.forget(tx, name)

    @abstractmethod
    def forget(self, tx: Tx, name: str) -> None: ...

    def set_status(self, name: str, status: str, error: str | None, at: str) -> None:
        with self.transaction(commit=True) as tx:
            tx.execute(
                "INSERT INTO projection_status (name, status, error, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT (name) DO UPDATE SET status=excluded.status, error=excluded.error,"
                " updated_at=excluded.updated_at",
                (name, status, error, at),
            )

    def statuses(self) -> dict[str, Row]:
        return {row["name"]: row for row in self.read("SELECT * FROM projection_status")}


class SQLiteReadStore(SQLiteTrackingRecorder, ReadStore):
    postgres = False

    def __init__(self, backend: SQLiteBackend) -> None:
        super().__init__(backend.datastore)
        self.create_table()

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Tx]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield Tx(cursor, postgres=False)

    def record(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx._cursor, Tracking(name, position))

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0

    def forget(self, tx: Tx, name: str) -> None:
        tx.execute("DELETE FROM tracking WHERE application_name=?", (name,))


class PostgresReadStore(PostgresTrackingRecorder, ReadStore):
    postgres = True

    def __init__(self, backend: PostgresBackend) -> None:
        super().__init__(backend.datastore, tracking_table_name="projection_tracking")
        self.create_table()

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[Tx]:
        with self.datastore.transaction(commit=commit) as cursor:
            yield Tx(cursor, postgres=True)

    def record(self, tx: Tx, name: str, position: int) -> None:
        self._insert_tracking(tx._cursor, Tracking(name, position))

    def position(self, name: str) -> int:
        return self.max_tracking_id(name) or 0

    def forget(self, tx: Tx, name: str) -> None:
        tx.execute(f"DELETE FROM {self.tracking_table_name} WHERE application_name=?", (name,))  # noqa: S608


def open_read_store(backend: Backend) -> ReadStore:
    if isinstance(backend, SQLiteBackend):
        return SQLiteReadStore(backend)
    if isinstance(backend, PostgresBackend):
        return PostgresReadStore(backend)
    raise TypeError(f"no read store for {type(backend).__name__}")
