"""eventsourcing's application recorders, extended by one keyword: ``insert_events(events,
commands=[Claim, ...])`` also writes each command's row (``commands.py``) in the transaction
that inserts the events, with the position of the command's last event.

On SQLite this hooks into the place eventsourcing leaves for it, inside its transaction
(``_insert_events``, which returns the rowids); without ``commands`` the recorder is
eventsourcing's own. On PostgreSQL the insert itself is rewritten to take one round trip
(``PostgresCommandRecorder``), with eventsourcing's table lock, NOTIFY and ``RETURNING`` kept
as they are; eventsourcing's conformance cases run against it unmodified
(``tests/integration/test_conformance.py``). A repeated (principal, command_id) violates the
rows' primary key, so the whole transaction — the events with it — rolls back with
eventsourcing's ``IntegrityError``, as a version conflict does; telling the two apart is the
writer's job (``GroupCommitWriter``), by looking the command up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from eventsourcing.utils import retry
from psycopg import ClientCursor, Cursor
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from .commands import INSERT_COMMANDS, Claim, command_rows


def _claims(kwargs: dict[str, Any]) -> Sequence[Claim]:
    claims: Sequence[Claim] = kwargs.get("commands") or ()
    return claims


class SQLiteCommandRecorder(SQLiteApplicationRecorder):
    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        claims = _claims(kwargs)
        if claims:
            if positions is None:
                raise ProgrammingError("the recorder returned no positions")
            c.executemany(INSERT_COMMANDS, command_rows(claims, positions))
        return positions


class PostgresCommandRecorder(PostgresApplicationRecorder):
    """On PostgreSQL the whole append is one round trip: eventsourcing's transaction — its
    table lock (commit order = position order), its NOTIFY, its ``INSERT … RETURNING
    notification_id`` of the events in order — and the command rows, sent as one string of
    statements (client-side binding). eventsourcing's own path sends them one by one in a
    pipeline, which is 14 waits for the server per append; each one gives up Python's GIL and
    has to win it back, and with dozens of request threads about, the group-commit writer spent
    ~10 ms per append in those waits against ~0.4 ms of work on the server."""

    _insert_commands = INSERT_COMMANDS.replace("?", "%s")

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str) -> None:
        if datastore.enable_db_functions:
            # That path inserts through a stored function and skips the command rows.
            raise ValueError("enable_db_functions would bypass the command rows")
        super().__init__(datastore, events_table_name=events_table_name)
        table = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(events_table_name))
        id_type = Identifier(datastore.originator_id_type)
        head = [SQL("BEGIN"), *self.lock_table_statements]
        head.append(SQL("NOTIFY {}").format(Identifier(self.channel_name)))
        events = SQL(
            "INSERT INTO {table} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%s::{id_type}[], %s::bigint[], %s::text[], %s::bytea[])"
            " RETURNING notification_id"
        ).format(table=table, id_type=id_type)
        commands = SQL(
            "INSERT INTO applied_commands (principal, command_id, aggregate_id, position)"
            " SELECT c.principal, c.command_id, c.aggregate_id, e.notification_id"
            " FROM unnest(%s::text[], %s::text[], %s::text[], %s::{id_type}[], %s::bigint[])"
            " AS c (principal, command_id, aggregate_id, originator_id, originator_version)"
            " JOIN {table} e USING (originator_id, originator_version)"
        ).format(table=table, id_type=id_type)
        self._append = SQL("; ").join([*head, events, SQL("COMMIT")])
        self._append_with_commands = SQL("; ").join([*head, events, commands, SQL("COMMIT")])

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """eventsourcing's own path, kept for appends inside a caller's transaction
        (``PostgresBackend.insert_in``, an event session): after its ``INSERT … RETURNING``,
        the command rows."""
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        claims = _claims(kwargs)
        if claims:
            if positions is None:
                raise ProgrammingError("the recorder returned no positions")
            # In a pipeline if the caller's is one (this enters it again, no new mode); the
            # sync makes a duplicate key raise here, as eventsourcing does for its own insert,
            # instead of surfacing at COMMIT.
            with curs.connection.pipeline() as pipeline:
                curs.executemany(self._insert_commands, command_rows(claims, positions))
                pipeline.sync()
        return positions

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        claims = _claims(kwargs)
        params: list[list[Any]] = [
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        ]
        if claims:
            lasts = [stored_events[c.last_event] for c in claims]
            params += [
                [c.record.principal for c in claims],
                [str(c.record.command_id) for c in claims],
                [str(c.record.aggregate_id) for c in claims],
                [e.originator_id for e in lasts],
                [e.originator_version for e in lasts],
            ]
        with self.datastore.get_connection() as conn:
            assert conn.autocommit
            cursor = ClientCursor(conn)
            try:
                cursor.execute(self._append_with_commands if claims else self._append, params)
                positions = _returned(cursor, len(stored_events), len(claims))
            except BaseException:
                # A statement failed (a version conflict, a repeated command): the server
                # skipped the rest, COMMIT too, and the transaction is left aborted.
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
        return positions


def _returned(cursor: ClientCursor[Any], events: int, commands: int) -> list[int]:
    """The events' positions, from the results of ``_append``'s statements in turn (BEGIN,
    the lock's two, NOTIFY, the events' INSERT, the commands' INSERT, COMMIT)."""
    positions: list[int] | None = None
    inserted: list[int] = []
    while True:
        status = cursor.statusmessage or ""
        if status.startswith("INSERT"):
            inserted.append(int(status.rsplit(" ", 1)[1]))
            if positions is None:
                positions = [int(row["notification_id"]) for row in cursor.fetchall()]
        if not cursor.nextset():
            break
    if positions is None or len(positions) != events or inserted[1:] not in ([], [commands]):
        raise ProgrammingError(
            f"the append returned {inserted} rows for {events} events and {commands} commands"
        )
    if status != "COMMIT":
        raise ProgrammingError(f"the append ended with {status!r}, not COMMIT")
    return positions
