"""eventsourcing's application recorders, extended by one keyword: ``insert_events(events,
commands=[Claim, ...])`` also writes each command's row (``commands.py``) in the transaction
that inserts the events, after their positions are known. Without ``commands`` they are
eventsourcing's own, unchanged.

Both hook into the places eventsourcing leaves for it, inside its transaction: on SQLite
``_insert_events`` (which returns the rowids), on PostgreSQL ``_fetch_ids_after_insert_events``
(after the events' ``INSERT … RETURNING``, under the events table's lock, in pipeline mode). A
repeated (principal, command_id) violates the rows' primary key, so the whole transaction — the
events with it — rolls back with eventsourcing's ``IntegrityError``, as a version conflict does;
telling the two apart is the writer's job (``GroupCommitWriter``), by looking the command up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow

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
    _insert_commands = INSERT_COMMANDS.replace("?", "%s")

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str) -> None:
        if datastore.enable_db_functions:
            # That path inserts through a stored function and skips the hooks used here.
            raise ValueError("enable_db_functions would bypass the command rows")
        super().__init__(datastore, events_table_name=events_table_name)

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        claims = _claims(kwargs)
        if claims:
            if positions is None:
                raise ProgrammingError("the recorder returned no positions")
            # Already in the recorder's pipeline: this enters it again (no new mode), and the
            # sync makes a duplicate key raise here, as eventsourcing does for its own insert,
            # instead of surfacing at COMMIT.
            with curs.connection.pipeline() as pipeline:
                curs.executemany(self._insert_commands, command_rows(claims, positions))
                pipeline.sync()
        return positions
