"""Where every handler stands, and how it is doing, in the database its effects live in.

``SQLiteTrackingStore`` and ``PostgresTrackingStore`` extend eventsourcing's own tracking
recorders (and are held to its ``TrackingRecorderTestCase`` in the tests). A handler's effects and
its tracking position are written in one transaction; the tracking insert refuses a position that
is not ahead of the recorded one, so a duplicate or out-of-order batch rolls back instead of
applying twice. The tables come from ``event_store/`` (``lightning db migrate``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    def transaction(
        self, *, commit: bool, durable: bool = False, pipelined: bool = False
    ) -> Iterator[Tx]:
        """A transaction for consumers. Not ``durable`` (the default for what consumers derive
        from the log), a PostgreSQL commit does not wait for the disk; an operator's action
        (retry, skip) is ``durable``. ``pipelined``: see ``Backend.transaction``."""
        with self.backend.transaction(commit=commit, pipelined=pipelined) as tx:
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

    def record_all(self, tx: Tx, positions: Mapping[str, int]) -> None:
        """``record`` for several handlers at once (one statement on PostgreSQL)."""
        for name, position in positions.items():
            self.record(tx, name, position)

    def positions(self, tx: Tx, names: Sequence[str], *, lock: bool) -> dict[str, int]:
        """Each handler's recorded position (0 for none). With ``lock``, the rows stay locked
        until ``tx`` ends, so two processes never apply the same handler's batch at once — on
        PostgreSQL a missing row is created and then locked too (``FOR UPDATE`` locks no row
        that does not exist); SQLite's write transactions are serialised whole (``BEGIN
        IMMEDIATE``)."""
        if lock:
            return self.locking(tx, names)()[0]
        rows = tx.all(self._select(names), names) if names else []
        return self._found(names, rows)

    def locking(self, tx: Tx, names: Sequence[str]) -> Callable[[], tuple[dict[str, int], bool]]:
        """``positions(tx, names, lock=True)`` sent now and read when called (``Tx.later``:
        what is sent after it runs once the locks are held), with whether a row had to be
        created — then whatever was read along with it, before that row was locked, is to be
        read again."""
        if not names:
            return lambda: ({}, False)
        postgres = isinstance(self.backend, PostgresBackend)
        sql = self._select(names) + (" ORDER BY application_name FOR UPDATE" if postgres else "")
        rows = tx.later(sql, names)

        def locked() -> tuple[dict[str, int], bool]:
            found = rows()
            if not postgres or len(found) == len(set(names)):
                return self._found(names, found), False
            # Only before a handler's first batch (or after a rebuild's reset): the existing
            # rows are locked already, in name order, so this cannot deadlock with a process
            # that waits for them; it then locks what it created, or what another one just did.
            tx.execute(
                f"INSERT INTO {self.tracking_table} (application_name, notification_id)"  # noqa: S608
                f" VALUES {', '.join('(?, 0)' for _ in names)} ON CONFLICT DO NOTHING",
                sorted(names),
            )
            return self._found(names, tx.all(sql, names)), True

        return locked

    def _select(self, names: Sequence[str]) -> str:
        return (
            f"SELECT application_name, notification_id FROM {self.tracking_table}"  # noqa: S608
            f" WHERE application_name IN ({', '.join('?' * len(names))})"
        )

    @staticmethod
    def _found(names: Sequence[str], rows: Sequence[Row]) -> dict[str, int]:
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

    def record_all(self, tx: Tx, positions: Mapping[str, int]) -> None:
        """The recorder's own guard (move a row only forward; no row moved: refused) for all
        the handlers in one round trip; their rows exist and are locked (``positions``)."""
        if len(positions) < 2:
            super().record_all(tx, positions)
            return
        rows = tx.all(
            f"INSERT INTO {self.tracking_table} (application_name, notification_id)"  # noqa: S608
            f" VALUES {', '.join('(?, ?)' for _ in positions)}"
            " ON CONFLICT (application_name) DO UPDATE"
            " SET notification_id = excluded.notification_id"
            f" WHERE {self.tracking_table}.notification_id < excluded.notification_id"
            " RETURNING application_name",
            [value for item in sorted(positions.items()) for value in item],
        )
        behind = set(positions) - {r["application_name"] for r in rows}
        if behind:
            names = ", ".join(sorted(behind))
            raise LostRace(f"{names}: positions not ahead of the recorded ones")


def open_tracking_store(backend: Backend) -> TrackingStore:
    if isinstance(backend, SQLiteBackend):
        return SQLiteTrackingStore(backend)
    if isinstance(backend, PostgresBackend):
        return PostgresTrackingStore(backend)
    raise TypeError(f"no tracking store for {type(backend).__name__}")
