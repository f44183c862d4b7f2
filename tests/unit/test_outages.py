"""What counts as an outage (retry, blame nothing) and what is the data's or the code's fault."""

import sqlite3

import psycopg
import pytest
from eventsourcing.persistence import DataError, IntegrityError, OperationalError

from lightning.store.outages import Backoff, LostRace, is_retryable, is_transient


def sqlite_error(sql: str, *, lock: bool = False) -> sqlite3.Error:
    """A real sqlite3 error (with its result code), raised by the statement ``sql``."""
    first = sqlite3.connect(
        ":memory:" if not lock else "file:locked?mode=memory&cache=shared",
        uri=lock,
        timeout=0,
        isolation_level=None,
    )
    first.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
    first.execute("INSERT INTO t VALUES (1)")
    target = first
    if lock:
        first.execute("BEGIN IMMEDIATE")
        first.execute("INSERT INTO t VALUES (2)")
        target = sqlite3.connect("file:locked?mode=memory&cache=shared", uri=True, timeout=0)
    try:
        target.execute(sql)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


def postgres_error(cls: type[psycopg.Error], sqlstate: str) -> psycopg.Error:
    error = cls("x")
    error.sqlstate = sqlstate  # type: ignore[misc]
    return error


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),  # client-side
        psycopg.InterfaceError("the connection is closed"),
        postgres_error(psycopg.errors.AdminShutdown, "57P01"),
        postgres_error(psycopg.errors.SerializationFailure, "40001"),
        postgres_error(psycopg.errors.LockNotAvailable, "55P03"),
        postgres_error(psycopg.errors.TooManyConnections, "53300"),
        sqlite_error("INSERT INTO t VALUES (3)", lock=True),
    ],
)
def test_outages(error: Exception) -> None:
    assert is_transient(error)
    wrapped = OperationalError(str(error))
    wrapped.__cause__ = error
    assert is_transient(wrapped)  # as eventsourcing re-raises it


@pytest.mark.parametrize(
    "error",
    [
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
        postgres_error(psycopg.errors.UniqueViolation, "23505"),
        postgres_error(psycopg.errors.ProgramLimitExceeded, "54000"),
        postgres_error(psycopg.errors.UndefinedTable, "42P01"),
        sqlite_error("SELECT * FROM agents"),
        sqlite_error("INSERT INTO t VALUES (1)"),
        sqlite3.OperationalError("database is locked"),  # made up: no result code
        KeyError("name"),
        DataError("bad"),
        IntegrityError("dup"),
    ],
)
def test_faults_of_the_data_or_the_code(error: Exception) -> None:
    assert not is_transient(error)


def test_an_outage_a_handler_re_raises_as_its_cause_is_still_an_outage() -> None:
    try:
        try:
            raise psycopg.OperationalError("connection lost")
        except psycopg.Error as exc:
            raise RuntimeError("could not write the row") from exc
    except RuntimeError as chained:
        assert is_transient(chained)
    try:
        try:
            raise psycopg.OperationalError("connection lost")
        except psycopg.Error:
            raise ValueError("bad row")  # noqa: B904 (an error of its own, raised meanwhile)
    except ValueError as meanwhile:
        assert not is_transient(meanwhile)
    assert not is_transient(MemoryError())  # a poison event may be what eats the memory


def test_a_lost_race_is_retried_without_blame() -> None:
    assert is_retryable(LostRace("x")) and not is_transient(LostRace("x"))


def test_backoff_grows_to_a_second_and_resets() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(8)]
    assert delays[0] == 0.05 and delays == sorted(delays) and max(delays) == 1.0
    backoff.reset()
    assert backoff.next() == 0.05
