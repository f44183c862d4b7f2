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
# exceptions, insufficient resources (a full disk too), operator intervention (shutdown,
# cancel), system errors; and single states: serialisation failure, deadlock, a commit whose
# outcome is unknown, a lock wait that timed out, a read-only transaction (a failover).
_TRANSIENT_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_STATES = frozenset({"40001", "40P01", "40003", "55P03", "25006"})
# SQLite's primary result codes of the same kind: busy, locked, out of memory, read-only,
# interrupted, I/O error, full, cannot open, locking protocol. (57014, a cancelled statement,
# counts as an outage: Lightning sets no statement timeout, so it is an operator's cancel.)
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 8, 9, 10, 13, 14, 15})

# Waits between tries while the database is away: short enough that everything resumes well
# within two seconds of its return, long enough not to spin.
FIRST_WAIT = 0.05
LONGEST_WAIT = 1.0
OUTAGE_WAIT = wait_exponential(multiplier=FIRST_WAIT, max=LONGEST_WAIT)


def is_transient(exc: BaseException) -> bool:
    """True for an outage, False for a fault of the statement or the data. Follows explicit
    causes (``raise … from``: eventsourcing re-raises driver errors as its own that way), not
    the implicit context: an error raised while handling an outage is an error of its own."""
    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            return False
        if _transient_here(current):
            return True
        current = current.__cause__
    return False


def _transient_here(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state is None:  # raised by the client: the connection is gone, the pool timed out
            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_TRANSIENT
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
