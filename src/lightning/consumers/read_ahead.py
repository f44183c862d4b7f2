"""Reading the log a page ahead, for a consumer that is far behind (a rebuild).

A consumer reads a batch, applies it in a transaction and reads the next: the database and the
consumer's own CPU take turns. With a ``ReadAhead`` the page after the one just handed out is
read (and decoded) on a thread of its own while that one is applied, so the database's work on
a batch's writes overlaps the decoding of the next. The log is append-only and a page is read
outside any transaction, as any reader of the store does; a page is only used if it starts
exactly where the consumer stands, otherwise it is dropped and the right one read. At most two
pages are held at once: memory stays bounded however long the log is.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Self

from ..store.envelope import Envelope
from ..store.event_store import EventStore


class ReadAhead:
    def __init__(self, events: EventStore, page: int) -> None:
        self.events = events
        self.page = page
        self.pages_read = 0  # pages read from the store (ahead or not): what a rebuild cost
        self._counting = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._next: tuple[int, int | None, Future[list[Envelope]]] | None = None

    def take(self, after: int, upto: int | None) -> list[Envelope]:
        """The events after ``after`` (up to ``upto``), at most a page (as ``EventStore.read``,
        tolerant); then reads the following page in the background."""
        pending, self._next = self._next, None
        if pending is not None and pending[:2] == (after, upto):
            batch = pending[2].result()
        else:
            if pending is not None:
                pending[2].cancel()  # not where the consumer stands (a handler held back)
            batch = self._read(after, upto)
        if len(batch) == self.page:
            last = batch[-1].position
            self._next = (last, upto, self._pool.submit(self._read, last, upto))
        return batch

    def _read(self, after: int, upto: int | None) -> list[Envelope]:
        with self._counting:
            self.pages_read += 1
        return self.events.read(after, self.page, upto=upto, tolerant=True)

    def close(self) -> None:
        self._next = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
