"""lightning db migrate: idempotent, recorded, safe to run concurrently, refuses edited history."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lightning.bootstrap import Lightning
from lightning.config import Settings
from lightning.domain.errors import Unavailable
from lightning.store.backends import open_backend
from lightning.store.migrations import Migrator, available, migrations_dir, statements

from ..conftest import POSTGRES_ADMIN_URL


@pytest.fixture
def empty_postgres(postgres_server: str) -> str:
    import uuid

    import psycopg

    name = f"lightning_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_ADMIN_URL.rpartition("/")[0] + f"/{name}"  # type: ignore[misc]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_statements_keep_dollar_quoted_bodies_whole() -> None:
    sql = "-- comment\nCREATE TABLE a (x int);\nDO $$\nBEGIN\n  SELECT 1;\nEND $$;\nSELECT 2;\n"
    assert statements(sql) == [
        "CREATE TABLE a (x int)",
        "DO $$\nBEGIN\n  SELECT 1;\nEND $$",
        "SELECT 2",
    ]


def test_servers_refuse_an_unmigrated_postgres_and_migrate_is_idempotent(
    empty_postgres: str,
) -> None:
    with pytest.raises(Unavailable, match="lightning db migrate"):
        Lightning.open(Settings(database_url=empty_postgres, amqp_url=None))
    backend = open_backend(empty_postgres)
    try:
        first = Migrator(backend).migrate()
        assert [m.version for m in first] == sorted(m.version for m in first) and first
        assert Migrator(backend).migrate() == []
        assert Migrator(backend).pending() == []
    finally:
        backend.close()
    with Lightning.open(Settings(database_url=empty_postgres, amqp_url=None)) as app:
        assert app.store.max_position() == 0


def test_concurrent_migrations_apply_each_file_once(empty_postgres: str) -> None:
    def run(_: int) -> int:
        backend = open_backend(empty_postgres)
        try:
            return len(Migrator(backend).migrate())
        finally:
            backend.close()

    with ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(run, range(4)))
    assert sum(applied) == len(available("postgres"))


def test_an_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "event_store"
    shutil.copytree(migrations_dir(), folder)
    backend = open_backend(f"sqlite:///{tmp_path}/l.db")
    try:
        Migrator(backend, folder).migrate()
        target = folder / "0005_relay.sql"
        target.write_text(target.read_text() + "\n-- edited\n")
        with pytest.raises(Unavailable, match="changed after it was applied"):
            Migrator(backend, folder).pending()
    finally:
        backend.close()


def test_cli_db_migrate(empty_postgres: str, tmp_path: Path) -> None:
    env = {"LIGHTNING_DATABASE_URL": empty_postgres, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "lightning.cli", "db", "migrate"]
    first = subprocess.run(
        command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert "applied 0001_event_store.postgres.sql" in first.stderr
    again = subprocess.run(
        command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert again.returncode == 0 and "up to date" in again.stderr
    status = subprocess.run(
        [*command[:-1], "status"], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert "pending" not in status.stdout and "applied" in status.stdout
