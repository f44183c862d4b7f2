"""Reading the log a page ahead, for consumers that are far behind (a rebuild).

A consumer reads a batch, applies it in a transaction and reads the next: the database and the
consumer's own CPU take turns. Given a ``PageReader`` the page after the one just handed out is
read (and decoded) on a thread of its own while that one is applied, so the database's work on
a batch's writes overlaps the decoding of the next. The log is append-only and a page is read
outside any transaction, as any reader of the store does; a page is only used if it starts
exactly where the consumer stands, otherwise it is dropped and the right one read.

``SharedPages`` hands the same pages to several consumers, each on its own thread (a rebuild
splits its handlers in two, so that one's Python work overlaps the other's wait for the
database): the log is still read and decoded once. A page is kept until every reader has taken
it, and at most ``HELD`` pages are kept: a reader that is ahead waits for the slowest, so memory
stays bounded however long the log is. A reader that asks for a page nobody else will (its
handler was held back by a failing event) reads it for itself; a reader that is done
(``close``) is waited for no more.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..store.envelope import Envelope
from ..store.event_store import EventStore

HELD = 3  # pages kept at most by SharedPages (each ``page`` events)


class PagesClosed(RuntimeError):
    """A reader asked ``SharedPages`` for a page after it was closed (a rebuild stopping)."""


@dataclass
class _Page:
    read: Future[list[Envelope]]
    waiting: set[int]  # the readers that have not taken it yet


class SharedPages:
    def __init__(self, events: EventStore, page: int, readers: int) -> None:
        self.events = events
        self.page = page
        self.pages_read = 0  # pages read from the store (ahead or not): what a rebuild cost
        self._readers = set(range(readers))
        self._pages: dict[tuple[int, int | None], _Page] = {}
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self._closed = False

    def reader(self, index: int) -> PageReader:
        return PageReader(self, index)

    def take(self, reader: int, after: int, upto: int | None) -> list[Envelope]:
        """The events after ``after`` (up to ``upto``), at most a page (as ``EventStore.read``,
        tolerant); the page after it is then read in the background."""
        key = (after, upto)
        with self._changed:
            while True:  # looked at afresh on every wake-up: others take and add pages meanwhile
                if self._closed:
                    raise PagesClosed("the rebuild's pages were closed")
                for kept, page in list(self._pages.items()):
                    if kept[1] == upto and kept[0] < after:  # passed by, or skipped: not wanted
                        self._taken(kept, page, reader)
                found = self._pages.get(key)
                if found is not None or not self._is_ahead(after, upto):
                    break  # shared, or behind the pages kept (held back): read for itself
                if len(self._pages) < HELD:
                    found = self._submit(key)
                    break
                self._changed.wait()  # the leading reader waits for the slowest to let one go
            if found is not None:
                self._taken(key, found, reader)
        if found is None:
            batch = self._read(after, upto)
        else:
            try:
                batch = found.read.result()
            except BaseException:
                with self._changed:  # (an outage, say) to be read again, not served again
                    self._pages.pop(key, None)
                    self._changed.notify_all()
                raise
        if len(batch) == self.page:
            with self._changed:
                following = (batch[-1].position, upto)
                ahead = following not in self._pages and len(self._pages) < HELD
                if ahead and not self._closed:
                    self._submit(following)
        return batch

    def leave(self, reader: int) -> None:
        """``reader`` takes no more pages: none is kept for it."""
        with self._changed:
            self._readers.discard(reader)
            for key, page in list(self._pages.items()):
                self._taken(key, page, reader)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._pages.clear()
            self._changed.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _is_ahead(self, after: int, upto: int | None) -> bool:
        """Whether a page after ``after`` is beyond every page kept (a new one to share)."""
        return all(after > start for start, end in self._pages if end == upto)

    def _submit(self, key: tuple[int, int | None]) -> _Page:
        page = _Page(self._pool.submit(self._read, *key), set(self._readers))
        self._pages[key] = page
        return page

    def _taken(self, key: tuple[int, int | None], page: _Page, reader: int) -> None:
        page.waiting.discard(reader)
        if not page.waiting:
            self._pages.pop(key, None)
            self._changed.notify_all()

    def _read(self, after: int, upto: int | None) -> list[Envelope]:
        with self._changed:
            self.pages_read += 1
        return self.events.read(after, self.page, upto=upto, tolerant=True)


class PageReader:
    """One reader of ``SharedPages`` (what a consumer is given as its ``read_ahead``)."""

    def __init__(self, shared: SharedPages, index: int) -> None:
        self._shared = shared
        self._index = index

    def take(self, after: int, upto: int | None) -> list[Envelope]:
        return self._shared.take(self._index, after, upto)

    def close(self) -> None:
        self._shared.leave(self._index)
