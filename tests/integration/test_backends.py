"""The storage backends' own transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from lightning.bootstrap import Lightning
from lightning.store.backends import COPY_FROM, SQLiteBackend


def test_a_failed_sqlite_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A connection must never go back to the pool inside a transaction: it would hold
    SQLite's write lock and refuse the next BEGIN."""
    backend = SQLiteBackend(f"{tmp_path}/x.db")
    try:
        with backend.datastore.get_connection(commit=True) as conn:
            conn.cursor().execute("PRAGMA foreign_keys = ON")
        with backend.transaction() as tx:
            tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            tx.execute(
                "CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
                " DEFERRABLE INITIALLY DEFERRED)"
            )
        with pytest.raises(sqlite3.IntegrityError), backend.transaction() as tx:
            tx.execute("INSERT INTO child VALUES (99)")  # fails only at COMMIT
        with backend.transaction() as tx:
            tx.execute("INSERT INTO parent VALUES (1)")
        with backend.trial() as tx:
            tx.execute("INSERT INTO parent VALUES (2)")
        with backend.transaction(commit=False) as tx:
            assert [r["id"] for r in tx.all("SELECT id FROM parent")] == [1]
    finally:
        backend.close()


@pytest.mark.parametrize("new", [False, True])
def test_bulk_upserts_replace_and_keep_the_last_of_a_key(lightning: Lightning, new: bool) -> None:
    """Large batches go by COPY on PostgreSQL (merged through a staging table, or — rows
    expected to be new — straight into the table, merged after all when one is there)."""
    backend = lightning.store.backend
    with backend.transaction() as tx:
        tx.execute("CREATE TABLE bulk (id TEXT PRIMARY KEY, n INTEGER NOT NULL, note TEXT)")
        tx.upsert_many("bulk", "id", [{"id": "k1", "n": 1, "note": "before"}])
    for size in (3, COPY_FROM + 50):  # statements, then COPY
        rows = [{"id": f"k{i}", "n": i * 10 + size, "note": None} for i in range(size)]
        with backend.transaction() as tx:
            tx.upsert_many("bulk", "id", rows, new=new)
            tx.execute("INSERT INTO bulk VALUES ('in-the-same-transaction', 0, NULL)")
        found = {r["id"]: r["n"] for r in backend.query("SELECT id, n FROM bulk")}
        assert {k: found[k] for k in (r["id"] for r in rows)} == {r["id"]: r["n"] for r in rows}
        with backend.transaction() as tx:
            tx.execute("DELETE FROM bulk WHERE id = 'in-the-same-transaction'")
    with backend.transaction() as tx:  # of one key given twice, the last counts
        tx.upsert_many("bulk", "id", [{"id": "twice", "n": n, "note": None} for n in range(300)])
    assert backend.query("SELECT n FROM bulk WHERE id = 'twice'") == [{"n": 299}]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("pipelined", [False, True])
def test_a_postgres_transaction_that_fails_at_commit_is_rolled_back(
    lightning: Lightning, pipelined: bool
) -> None:
    """A deferred constraint fails only at COMMIT — in a pipelined transaction that is where the
    pipeline ends — and the connection goes back to the pool usable (SQLite: above)."""
    backend = lightning.store.backend
    with backend.transaction() as tx:
        tx.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        tx.execute(
            "CREATE TABLE child (parent INTEGER REFERENCES parent (id)"
            " DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(IntegrityError), backend.transaction(pipelined=pipelined) as tx:
        tx.execute("INSERT INTO child VALUES (99)")
    for _ in range(3):  # every pooled connection is fine
        with backend.transaction(pipelined=pipelined) as tx:
            tx.execute(
                "INSERT INTO parent VALUES (?)", (len(backend.query("SELECT * FROM parent")),)
            )
    assert backend.query("SELECT count(*) AS n FROM child") == [{"n": 0}]
