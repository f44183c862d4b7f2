"""A PostgreSQL connection pool that comes back within a second of the server.

eventsourcing's ``PostgresDatastore`` uses psycopg_pool unchanged, which after a server restart
(1) hands out every pooled connection once more, each failing on first use, and (2) reconnects
in the background with an exponential backoff that starts at 1 s and has no ceiling, so after an
outage of a few seconds the pool may wait several seconds past the server's return before it
tries again. Here the first failure has the pool test all its idle connections at once (dropping
the dead ones), and reconnection attempts come at most 0.25 s apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import ConnectionPool, PostgresDatastore
from psycopg import Connection
from psycopg.rows import DictRow
from psycopg_pool.base import AttemptWithBackoff

RECONNECT_EVERY = 0.25  # seconds, at most, between attempts to reach a server that is away
CHECK_EVERY = 0.5  # seconds, at least, between two sweeps of the idle connections


class _Attempt(AttemptWithBackoff):
    INITIAL_DELAY = 0.05

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_EVERY)


class _Pool(ConnectionPool[Any]):
    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        # psycopg_pool reschedules a failed attempt with the same object: a capped one stays
        # capped for as long as the server is away.
        super()._add_connection(attempt or _Attempt(timeout=self.reconnect_timeout), growing)


class RecoveringDatastore(PostgresDatastore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The pool is built (not yet opened) by the base class; give it the capped reconnection.
        self.pool.__class__ = _Pool
        self._sweep = threading.Lock()
        self._swept = 0.0

    @contextmanager
    def get_connection(self) -> Iterator[Connection[DictRow]]:
        try:
            with super().get_connection() as conn:
                yield conn
        except (OperationalError, InterfaceError):
            self._drop_dead_connections()
            raise

    def _drop_dead_connections(self) -> None:
        """After a connection failed, test the idle ones so the next caller gets a live one (or
        waits for a new one) instead of the next dead one. One sweep at a time, rarely."""
        if not self._sweep.acquire(blocking=False):
            return
        try:
            if time.monotonic() - self._swept < CHECK_EVERY:
                return
            self.pool.check()
            self._swept = time.monotonic()
        except Exception:  # noqa: S110 (best effort: the caller's own error is what counts)
            pass
        finally:
            self._sweep.release()
