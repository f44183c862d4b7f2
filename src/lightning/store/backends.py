"""Storage backends: eventsourcing's own SQLite and PostgreSQL application recorders, extended
only to write command rows with the events (``recorders.py``), plus the few reads they lack (a
stream with its global positions, an applied command)."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .commands import SELECT_COMMAND, Claim, CommandRecord, record_of
from .outages import FIRST_WAIT, is_transient
from .pool import RecoveringDatastore
from .recorders import PostgresCommandRecorder, SQLiteCommandRecorder

EVENTS_TABLE = "stored_events"
COPY_FROM = 200  # rows from which an upsert on PostgreSQL goes through COPY (Tx.upsert_many)
log = logging.getLogger(__name__)

Row = dict[str, Any]


class Tx:
    """A cursor with one SQL dialect for both backends: ``?`` placeholders, rows as dicts."""

    def __init__(self, cursor: Any, *, postgres: bool) -> None:
        self.cursor = cursor
        self._postgres = postgres
        self._after_commit: list[Callable[[], None]] = []

    @property
    def for_update(self) -> str:
        """What locks the selected rows until the transaction ends: ``FOR UPDATE`` on
        PostgreSQL; nothing on SQLite, whose write transactions hold the database's lock."""
        return " FOR UPDATE" if self._postgres else ""

    def serialise(self, key: str) -> None:
        """Hold ``key`` until the transaction ends, so transactions naming the same key run one
        after another (PostgreSQL's ``pg_advisory_xact_lock``; on SQLite a write transaction
        holds the database's lock already)."""
        if self._postgres:
            self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))

    def commit_asynchronously(self) -> None:
        """Let this transaction's commit return before it is on disk (PostgreSQL's
        ``synchronous_commit = off``; SQLite is unchanged): for writes whose loss in a database
        crash only means doing their work again — never for events."""
        if self._postgres:
            self.execute("SET LOCAL synchronous_commit TO OFF")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once this transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    def mark(self) -> int:
        """Where the after-commit callbacks stand (before a savepoint)."""
        return len(self._after_commit)

    def forget_since(self, mark: int) -> None:
        """Drop the callbacks registered since ``mark``: their savepoint was rolled back."""
        del self._after_commit[mark:]

    def committed(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # what committed stays committed; a listener's fault is its own
                log.exception("an after-commit callback failed")

    def execute(self, sql: str, params: Sequence[object] = ()) -> None:
        if not params:
            self.cursor.execute(sql)
            return
        if self._postgres:
            sql = sql.replace("?", "%s")
        self.cursor.execute(sql, tuple(params))

    def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """One statement for many parameter rows (pipelined on PostgreSQL: one round trip)."""
        if not rows:
            return
        if self._postgres:
            sql = sql.replace("?", "%s")
        self.cursor.executemany(sql, [tuple(r) for r in rows])

    def upsert_many(self, table: str, key: str, rows: Sequence[Row], *, new: bool = False) -> None:
        """Insert ``rows`` (dicts with the same columns), each replacing the row with its
        ``key`` if there is one; of rows with the same key, the last counts. One statement for
        all (``execute_many``), except on PostgreSQL outside a pipeline for many rows: those are
        copied into a temporary table (COPY) and merged from there in one statement, several
        times faster than a statement per row — what the large batches of a rebuild write.
        ``new``: the rows are expected not to be there yet (an append-only table), so on that
        path they are copied straight into the table, in a savepoint; if one was there after all
        (a redelivery), that is undone and they are merged as above."""
        if not rows:
            return
        columns = list(rows[0])
        names = ", ".join(columns)
        updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c != key)
        conflict = f" ON CONFLICT ({key}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING")
        if self._postgres and len(rows) >= COPY_FROM and not self.in_pipeline():
            if not (new and self._copied_new(table, columns, rows)):
                self._merge_copied(table, key, columns, rows, conflict)
            return
        self.execute_many(
            f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))}){conflict}",  # noqa: S608
            [[row[c] for c in columns] for row in rows],
        )

    def empty(self, tables: Sequence[str]) -> None:
        """Delete every row of ``tables`` (names from code): TRUNCATE on PostgreSQL, which
        leaves no dead rows behind (it waits for the tables' readers; PostgreSQL's TRUNCATE is
        transactional), DELETE on SQLite (which truncates a table emptied whole)."""
        if not tables:
            return
        if self._postgres:
            self.execute(f"TRUNCATE {', '.join(tables)}")
            return
        for table in tables:
            self.execute(f"DELETE FROM {table}")  # noqa: S608

    def in_pipeline(self) -> bool:
        """Whether this is a pipelined transaction (``Backend.transaction``; PostgreSQL)."""
        if not self._postgres:
            return False
        from psycopg import pq

        return bool(self.cursor.connection.info.pipeline_status != pq.PipelineStatus.OFF)

    def _copied_new(self, table: str, columns: list[str], rows: Sequence[Row]) -> bool:
        """COPY ``rows`` into ``table`` itself, in a savepoint: False (and nothing written) if
        one of their keys is already there."""
        from psycopg.errors import UniqueViolation

        names = ", ".join(columns)
        try:
            with (
                self.cursor.connection.transaction(),  # a savepoint: this is inside one
                self.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        except UniqueViolation:
            return False
        return True

    def _merge_copied(
        self, table: str, key: str, columns: list[str], rows: Sequence[Row], conflict: str
    ) -> None:
        names = ", ".join(columns)
        # A staging table per connection and column set, emptied at every commit: made once,
        # without the table's constraints (it holds only what one statement merges).
        stage = f"_stage_{table}_{zlib.crc32(names.encode()):08x}"
        cursor = self.cursor
        create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS"
        cursor.execute(f"{create} SELECT {names} FROM {table} WITH NO DATA")  # noqa: S608
        last = {row[key]: row for row in rows}  # one row per key: a merge touches each once
        with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in last.values():
                copy.write_row([row[c] for c in columns])
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}{conflict}")  # noqa: S608
        cursor.execute(f"DELETE FROM {stage}")  # noqa: S608

    def later(self, sql: str, params: Sequence[object] = ()) -> Callable[[], list[Row]]:
        """Send a query now and read its rows when the result is called. In a pipelined
        transaction (``Backend.transaction``) the queries sent before the first of them is
        read travel together, in order: one round trip for all; otherwise this is ``all``."""
        if not self._postgres:
            rows = self.all(sql, params)
            return lambda: rows
        cursor = self.cursor.connection.cursor(row_factory=dict_row)
        cursor.execute(sql.replace("?", "%s"), tuple(params))

        def rows_later() -> list[Row]:
            try:
                return [dict(row) for row in cursor.fetchall()]
            finally:
                cursor.close()

        return rows_later

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        self.execute(sql, params)
        row = self.cursor.fetchone()
        return None if row is None else dict(row)

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        self.execute(sql, params)
        # sqlite3.Row and psycopg's dict rows both map column -> value
        return [dict(row) for row in self.cursor.fetchall()]


class Backend(ABC):
    """One database: the event recorder plus the datastore projections share."""

    recorder: ApplicationRecorder
    kind: str

    @abstractmethod
    def read_stream(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Notification]:
        """The events of one aggregate with ``after_version < version <= to_version`` and a
        position after ``after_position``, at most ``limit``, in version order, each with its
        global position as ``id``."""

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def command(self, principal: str, command_id: UUID) -> CommandRecord | None:
        """The command this principal applied with this id, if any (committed ones only)."""
        rows = self.query(SELECT_COMMAND, (principal, str(command_id)))
        return record_of(rows[0]) if rows else None

    def read_log(
        self, after: int, limit: int, *, upto: int | None = None, types: Sequence[str] = ()
    ) -> Sequence[Notification]:
        return self.recorder.select_notifications(
            after, limit, stop=upto, topics=types, inclusive_of_start=False
        )

    @abstractmethod
    def read_log_in(
        self, tx: Tx, after: int, limit: int, *, upto: int | None = None
    ) -> list[Notification]:
        """Like ``read_log``, on ``tx``'s own connection: for a reader inside a write
        transaction, which on SQLite (one writer, and no reader while it writes) must not wait
        for a second connection."""

    def read_log_later(
        self, tx: Tx, after: int, limit: int, *, upto: int | None = None
    ) -> Callable[[], list[Notification]]:
        """``read_log_in``, sent now and read when called (``Tx.later``)."""
        sql = f"SELECT {self._position_select} FROM {self._events} WHERE {self._position} > ?"  # noqa: S608
        params: list[object] = [after]
        if upto is not None:
            sql += f" AND {self._position} <= ?"
            params.append(upto)
        rows = tx.later(f"{sql} ORDER BY {self._position} LIMIT ?", [*params, limit])
        return lambda: [self._notification(row) for row in rows()]

    def read_positions_in(self, tx: Tx, positions: Sequence[int]) -> list[Notification]:
        """The events at these positions, on ``tx``'s own connection (see ``read_log_in``)."""
        found: list[Notification] = []
        wanted = sorted(set(positions))
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            tx.execute(
                f"SELECT {self._position_select} FROM {self._events}"  # noqa: S608
                f" WHERE {self._position} IN ({', '.join('?' * len(part))})"
                f" ORDER BY {self._position}",
                part,
            )
            found += [self._notification(row) for row in tx.cursor.fetchall()]
        return found

    def read_stream_in(
        self,
        tx: Tx,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Notification]:
        """``read_stream`` on ``tx``'s own connection (it sees what ``tx`` wrote)."""
        sql = f"SELECT {self._position_select} FROM {self._events} WHERE originator_id = ?"  # noqa: S608
        params: list[object] = [self._originator(aggregate_id)]
        for clause, value in (
            (" AND originator_version > ?", after_version),
            (" AND originator_version <= ?", to_version),
            (f" AND {self._position} > ?", after_position),
        ):
            if value:
                sql += clause
                params.append(value)
        sql += " ORDER BY originator_version"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        tx.execute(sql, params)
        return [self._notification(row) for row in tx.cursor.fetchall()]

    @abstractmethod
    def insert_in(
        self, tx: Tx, events: Sequence[StoredEvent], claims: Sequence[Claim]
    ) -> list[int]:
        """Insert events (and the claims' command rows) inside ``tx``, under the recorder's own
        guards (on PostgreSQL its table lock, so positions keep commit order); their positions.
        A version or command-id collision raises the driver's integrity error."""

    @abstractmethod
    def _originator(self, aggregate_id: UUID) -> object: ...

    _position: str
    _position_select: str

    @property
    @abstractmethod
    def _events(self) -> str: ...

    @abstractmethod
    def _notification(self, row: Any) -> Notification: ...

    def read_positions(self, positions: Sequence[int]) -> list[Notification]:
        """The events at these positions, in position order (missing ones left out)."""
        found: list[Notification] = []
        wanted = sorted(set(positions))
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            found += self._select_positions(part)
        return found

    @abstractmethod
    def _select_positions(self, positions: Sequence[int]) -> list[Notification]: ...

    @abstractmethod
    @contextmanager
    def transaction(self, *, commit: bool = True, pipelined: bool = False) -> Iterator[Tx]:
        """One database transaction, committed at the end (rolled back on error). With
        ``commit=False`` it is for reading only (on PostgreSQL: no transaction block at all).
        ``pipelined`` (PostgreSQL; SQLite ignores it): statements whose results are not read
        are sent with the next one that is, BEGIN and COMMIT included (psycopg's pipeline
        mode), which saves round trips — but a failing statement then raises where the next
        result is read, not where it was executed: for work that, when anything fails, is
        done again another way as a whole."""

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """One read; tried again (briefly) when the first connection turns out dead, as every
        pooled one is after a database restart."""
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=FIRST_WAIT, max=0.2),
            reraise=True,
        ):
            with attempt, self.transaction(commit=False) as tx:
                return tx.all(sql, params)
        raise AssertionError("unreachable")

    @abstractmethod
    @contextmanager
    def trial(self) -> Iterator[Tx]:
        """A writing transaction that is always rolled back (dry runs)."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteBackend(Backend):
    kind = "sqlite"
    recorder: SQLiteCommandRecorder
    _position = "rowid"
    _position_select = "rowid, *"
    _events = EVENTS_TABLE

    def _notification(self, row: Any) -> Notification:
        return _sqlite_notification(row)

    def _originator(self, aggregate_id: UUID) -> object:
        return aggregate_id.hex

    def insert_in(
        self, tx: Tx, events: Sequence[StoredEvent], claims: Sequence[Claim]
    ) -> list[int]:
        positions = self.recorder._insert_events(tx.cursor, events, commands=claims)
        return list(positions or [])

    def __init__(self, path: str) -> None:
        self.path = path
        # One datastore (one pool) for events and read models: its reader/writer interlocking
        # then covers both, instead of two pools contending for SQLite's single write lock.
        self.datastore = SQLiteDatastore(path, lock_timeout=30, pool_size=8)
        self.recorder = SQLiteCommandRecorder(self.datastore, EVENTS_TABLE)

    def read_stream(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Notification]:
        sql = f"SELECT rowid, * FROM {EVENTS_TABLE} WHERE originator_id=?"  # noqa: S608
        params: list[object] = [aggregate_id.hex]
        for clause, value in (
            (" AND originator_version>?", after_version),
            (" AND originator_version<=?", to_version),
            (" AND rowid>?", after_position),
        ):
            if value:
                sql += clause
                params.append(value)
        sql += " ORDER BY originator_version"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [_sqlite_notification(row) for row in c.fetchall()]

    def read_log_in(
        self, tx: Tx, after: int, limit: int, *, upto: int | None = None
    ) -> list[Notification]:
        sql = f"SELECT rowid, * FROM {EVENTS_TABLE} WHERE rowid > ?"  # noqa: S608
        params: list[object] = [after]
        if upto is not None:
            sql += " AND rowid <= ?"
            params.append(upto)
        tx.execute(sql + " ORDER BY rowid LIMIT ?", [*params, limit])
        return [_sqlite_notification(row) for row in tx.cursor.fetchall()]

    def _select_positions(self, positions: Sequence[int]) -> list[Notification]:
        marks = ", ".join("?" * len(positions))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT rowid, * FROM {EVENTS_TABLE} WHERE rowid IN ({marks}) ORDER BY rowid",  # noqa: S608
                list(positions),
            )
            return [_sqlite_notification(row) for row in c.fetchall()]

    @contextmanager
    def transaction(self, *, commit: bool = True, pipelined: bool = False) -> Iterator[Tx]:
        if not commit:
            with self.datastore.transaction(commit=False) as cursor:
                yield Tx(cursor, postgres=False)
            return
        with self._immediate(commit=True) as tx:
            yield tx
        tx.committed()

    @contextmanager
    def trial(self) -> Iterator[Tx]:
        with self._immediate(commit=False) as tx:
            yield tx

    @contextmanager
    def _immediate(self, *, commit: bool) -> Iterator[Tx]:
        """A write transaction that takes SQLite's write lock when it begins (waiting for it as
        long as the datastore's lock timeout), rather than at its first write: a deferred one
        that read first fails with SQLITE_BUSY when another process committed meanwhile."""
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor, postgres=False)
                cursor.execute("COMMIT" if commit else "ROLLBACK")
            except BaseException:
                # Never hand the connection back inside a transaction (it would hold SQLite's
                # write lock): roll back, unless SQLite already did (a full disk, say).
                with contextlib.suppress(sqlite3.OperationalError):
                    cursor.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.datastore.close()


@dataclass(frozen=True)
class PostgresLocation:
    dbname: str
    host: str
    port: int
    user: str
    password: str
    schema: str

    @classmethod
    def parse(cls, url: str) -> PostgresLocation:
        parts = urlparse(url)
        query = parse_qs(parts.query)
        return cls(
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or os.environ.get("USER", "postgres")),
            password=unquote(parts.password or ""),
            schema=query.get("schema", ["public"])[0],
        )

    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            dbname=self.dbname,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            options=f"-c search_path={self.schema}",
        )


def _sqlite_notification(row: Any) -> Notification:
    return Notification(
        id=row["rowid"],
        originator_id=UUID(row["originator_id"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"],
    )


class PostgresBackend(Backend):
    kind = "postgres"
    recorder: PostgresCommandRecorder
    _position = "notification_id"
    _position_select = "*"

    def _notification(self, row: Any) -> Notification:
        return _postgres_notification(row)

    def _originator(self, aggregate_id: UUID) -> object:
        return aggregate_id

    def insert_in(
        self, tx: Tx, events: Sequence[StoredEvent], claims: Sequence[Claim]
    ) -> list[int]:
        # What the recorder's own insert_events does inside its transaction (table lock,
        # NOTIFY, INSERT … RETURNING, command rows), here inside the caller's.
        self.recorder._insert_stored_events(tx.cursor, events)
        if tx.in_pipeline():
            # The INSERT's result (its positions, or a collision) is wanted now, where the
            # caller's savepoint is (eventsourcing syncs here on its own pipelined path too).
            with tx.cursor.connection.pipeline() as pipeline:
                pipeline.sync()
        positions = self.recorder._fetch_ids_after_insert_events(tx.cursor, events, commands=claims)
        return list(positions or [])

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.location = loc = PostgresLocation.parse(url)
        self.datastore = RecoveringDatastore(
            dbname=loc.dbname,
            host=loc.host,
            port=loc.port,
            user=loc.user,
            password=loc.password,
            schema=loc.schema,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No SELECT 1 before every checkout: the recorder retries a broken connection.
            pre_ping=False,
            lock_timeout=10,
            idle_in_transaction_session_timeout=30,
        )
        # Tables come from event_store/ (lightning db migrate), not from the recorder.
        self.recorder = PostgresCommandRecorder(self.datastore, events_table_name=EVENTS_TABLE)
        self._select_stream = (
            SQL("SELECT * FROM {}.{} WHERE originator_id=%s")
            .format(Identifier(loc.schema), Identifier(EVENTS_TABLE))
            .as_string(None)
            .encode()
        )

    def schema_ready(self) -> None:
        """Load the composite type the recorder inserts with (it exists once migrated)."""
        self.datastore.register_type_adapters()

    def read_stream(
        self,
        aggregate_id: UUID,
        *,
        to_version: int | None = None,
        after_version: int = 0,
        after_position: int = 0,
        limit: int | None = None,
    ) -> list[Notification]:
        # Bytes put together from a prefix quoted once: composing psycopg's SQL objects and
        # rendering them again on every read was a tenth of a command's CPU.
        sql = self._select_stream
        params: list[object] = [aggregate_id]
        for clause, value in (
            (b" AND originator_version>%s", after_version),
            (b" AND originator_version<=%s", to_version),
            (b" AND notification_id>%s", after_position),
        ):
            if value:
                sql += clause
                params.append(value)
        sql += b" ORDER BY originator_version"
        if limit is not None:
            sql += b" LIMIT %s"
            params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            # One statement: no BEGIN/ROLLBACK round trips around it (autocommit connection).
            c.execute(sql, params, prepare=True)
            return [_postgres_notification(row) for row in c.fetchall()]

    def read_log_in(
        self, tx: Tx, after: int, limit: int, *, upto: int | None = None
    ) -> list[Notification]:
        sql = f"SELECT * FROM {self._events} WHERE notification_id > ?"  # noqa: S608
        params: list[object] = [after]
        if upto is not None:
            sql += " AND notification_id <= ?"
            params.append(upto)
        tx.execute(sql + " ORDER BY notification_id LIMIT ?", [*params, limit])
        return [_postgres_notification(row) for row in tx.cursor.fetchall()]

    @property
    def _events(self) -> str:
        schema = self.location.schema.replace('"', '""')
        return f'"{schema}"."{EVENTS_TABLE}"'

    def _select_positions(self, positions: Sequence[int]) -> list[Notification]:
        from psycopg.sql import SQL, Identifier

        sql = SQL("SELECT * FROM {}.{} WHERE notification_id = ANY(%s) ORDER BY notification_id")
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            c.execute(
                sql.format(Identifier(self.location.schema), Identifier(EVENTS_TABLE)),
                [list(positions)],
            )
            return [_postgres_notification(row) for row in c.fetchall()]

    @contextmanager
    def transaction(self, *, commit: bool = True, pipelined: bool = False) -> Iterator[Tx]:
        if not commit:
            # Read-only use: statements run on an autocommit connection, each atomic on its
            # own, which spares the BEGIN and ROLLBACK round trips. (Don't write in here.)
            with self.datastore.get_connection() as conn, conn.cursor() as cursor:
                yield Tx(cursor, postgres=True)
            return
        if pipelined:
            with self._pipelined() as tx:
                yield tx
            tx.committed()
            return
        with self.datastore.transaction(commit=True) as cursor:
            tx = Tx(cursor, postgres=True)
            yield tx
        tx.committed()

    @contextmanager
    def _pipelined(self) -> Iterator[Tx]:
        """A transaction in pipeline mode, begun and ended by hand rather than by psycopg's
        ``transaction()``, which waits for BEGIN and syncs twice more around COMMIT: here BEGIN
        goes out with the first statement and COMMIT with the pipeline's closing Sync; an error
        there (raised on leaving the pipeline) is rolled back as one in the body is."""
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline(), conn.cursor() as cursor:
                    cursor.execute("BEGIN", prepare=False)
                    yield Tx(cursor, postgres=True)
                    cursor.execute("COMMIT", prepare=False)
            except BaseException:
                # psycopg's own rollback (out of the pipeline now): it keeps its
                # prepared-statement cache in step with the server. A broken connection is
                # dropped by the pool.
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise

    @contextmanager
    def trial(self) -> Iterator[Tx]:
        with self.datastore.transaction(commit=False) as cursor:  # force_rollback
            yield Tx(cursor, postgres=True)

    def close(self) -> None:
        self.datastore.close()


def _postgres_notification(row: Any) -> Notification:
    return Notification(
        id=row["notification_id"],
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )


def open_backend(url: str, *, pool_size: int = 10) -> Backend:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url, pool_size=pool_size)
    if url.startswith("sqlite://"):
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"unsupported SQLite URL {url!r}; use sqlite:///relative/path.db")
        if path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SQLiteBackend(path)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
