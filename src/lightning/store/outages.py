"""Outages: which failures are the database's (wait and retry; never blame the data) and how
long every loop waits between tries.

A consumer that meets an outage retries the whole batch without counting it against any event,
so an outage never parks anything; anything else a handler raises (a constraint violation, bad
data, a bug) is the event's problem, retried a bounded number of times and then parked.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import psycopg
from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from tenacity import wait_exponential

# SQLSTATE classes of PostgreSQL errors that say nothing about the statement: connection
# exceptions, transaction rollbacks (serialisation, deadlock), insufficient resources,
# operator intervention (shutdown, cancel), system errors; and a lock wait that timed out.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_STATES = frozenset({"55P03"})
_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open")

# Waits between tries while the database is away: short enough that everything resumes well
# within two seconds of its return, long enough not to spin.
FIRST_WAIT = 0.05
LONGEST_WAIT = 1.0
OUTAGE_WAIT = wait_exponential(multiplier=FIRST_WAIT, max=LONGEST_WAIT)


def is_transient(exc: BaseException) -> bool:
    """True for an outage or a lost race, False for a fault of the statement or the data."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if _transient_here(current):
            return True
        current, seen = current.__cause__, seen + 1
    return False


def _transient_here(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:  # raised by the client: the connection is gone, the pool timed out
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(word in message for word in _SQLITE_TRANSIENT)
    if isinstance(exc, StoreOperationalError | StoreInterfaceError):
        return exc.__cause__ is None  # eventsourcing's own, not wrapping a driver error
    return False


@dataclass
class Backoff:
    """Exponential waits for a hand-written loop: ``next()`` after a failure, ``reset()`` after
    a success."""

    first: float = FIRST_WAIT
    longest: float = LONGEST_WAIT
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.longest, self.current * 2 or self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class LostRace(Exception):
    """Another process recorded a consumer position first (a standby, a rebuild): the batch is
    abandoned and read again from the store, like after an outage."""


def is_retryable(exc: BaseException) -> bool:
    """What a consumer loop retries without blaming anything: outages and lost races."""
    return isinstance(exc, LostRace) or is_transient(exc)
