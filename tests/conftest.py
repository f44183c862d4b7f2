"""Shared fixtures: one contract, several backends.

``database_url`` runs a test on the embedded SQLite default and on a fresh PostgreSQL database
(created for the test, dropped after). Locally a missing service skips those cases; under CI
(``CI=true``) it fails them, so a green run means they ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from lightning.store.backends import open_backend
from lightning.store.migrations import Migrator

POSTGRES_ADMIN_URL = os.environ.get(
    "LIGHTNING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# Every process the tests start (and every Settings they build) shares one encryption key, as a
# deployment's processes do; tests of a missing key remove it themselves.
TEST_ENCRYPTION_KEY = "test:" + "A" * 43 + "="
os.environ.setdefault("LIGHTNING_ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)


def service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error}); run scripts/services.sh"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _admin_conninfo() -> str:
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_server() -> str:
    try:
        with psycopg.connect(_admin_conninfo(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        service_missing("PostgreSQL", exc)
    return POSTGRES_ADMIN_URL


def migrate(url: str) -> None:
    backend = open_backend(url)
    try:
        Migrator(backend).migrate()
    finally:
        backend.close()


def _url_for(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    yield from fresh_database(postgres_server)


@pytest.fixture(scope="module")
def module_postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test module."""
    yield from fresh_database(postgres_server)


def fresh_database(postgres_server: str) -> Iterator[str]:
    name = f"lightning_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = _url_for(name)
        migrate(url)
        yield url
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


AMQP_URL = os.environ.get("LIGHTNING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    import asyncio

    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        await connection.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        service_missing("RabbitMQ", exc)
    return AMQP_URL


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lightning.db"
    url: str = request.getfixturevalue("postgres_url")
    return url
