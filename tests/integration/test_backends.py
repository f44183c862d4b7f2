"""The storage backends' own transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lightning.store.backends import SQLiteBackend


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
