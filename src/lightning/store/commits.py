"""Being told that the event store has committed: for followers of the log (the outbox relay,
the live feed) that act at once on a new event and poll only as a fallback.

On PostgreSQL every transaction that inserts events NOTIFYs the recorder's channel (eventsourcing
does it under its table lock, and PostgreSQL delivers it at the commit); a ``CommitWatcher``
LISTENs on its own connection and calls ``wake`` for each notification. On SQLite there is
nothing to listen to (``available`` is False): the in-process bus wakes followers instead.

``wake`` is also called each time the watcher (re)starts listening, so a follower that read the
log before then reads it again and misses nothing committed while nobody listened, and when it
stops. A follower may rely on a wake-up for every commit only while ``listening`` is True;
otherwise it polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from .backends import Backend, PostgresBackend

log = logging.getLogger(__name__)

RETRY_AFTER = 0.5  # seconds between attempts to listen again after a failure


class CommitWatcher:
    def __init__(self, backend: Backend, wake: Callable[[], None]) -> None:
        self._backend = backend
        self._wake = wake
        self._listening = False

    @property
    def available(self) -> bool:
        return isinstance(self._backend, PostgresBackend)

    @property
    def listening(self) -> bool:
        return self._listening

    async def run(self) -> None:
        """Listen until cancelled, connecting again after any failure."""
        backend = self._backend
        if not isinstance(backend, PostgresBackend):
            return
        channel = backend.recorder.channel_name
        warned = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    backend.location.conninfo(), autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    self._listening, warned = True, False
                    self._wake()  # whatever committed before this moment is read now
                    async for _ in conn.notifies():
                        self._wake()
            except psycopg.Error as exc:
                if self._listening:
                    self._listening = False
                    self._wake()  # so that a follower waiting on a long fallback polls again
                if not warned:
                    log.warning("LISTEN %s failed (%s); polling meanwhile", channel, exc)
                    warned = True
            finally:
                self._listening = False
            await asyncio.sleep(RETRY_AFTER)
