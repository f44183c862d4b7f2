"""Group commit: appends from concurrent commands share one transaction.

Callers (request threads) hand their events to a single writer thread and wait. While one
transaction is in flight the next callers queue up, and the writer commits all of them together,
so the commit cost (an fsync, and on PostgreSQL the table lock that keeps positions in commit
order) is paid once per batch instead of once per command. Each command's events stay atomic: if
a batch fails on an optimistic-concurrency conflict, the writer retries its commands one by one so
only the conflicting command fails.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from eventsourcing.persistence import (
    ApplicationRecorder,
    DataError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)

from ..domain.errors import ConcurrencyConflict, Unavailable

log = logging.getLogger(__name__)


@dataclass
class _Append:
    events: Sequence[StoredEvent]
    done: threading.Event = field(default_factory=threading.Event)
    positions: list[int] = field(default_factory=list)
    error: Exception | None = None


class GroupCommitWriter:
    def __init__(
        self,
        recorder: ApplicationRecorder,
        *,
        max_batch_events: int = 1000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._recorder = recorder
        self._max = max_batch_events
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def append(self, events: Sequence[StoredEvent]) -> list[int]:
        """Store the events atomically; return their positions. Blocks until committed."""
        if not events:
            return []
        request = _Append(events)
        with self._lock:
            if self._closed:
                raise Unavailable("the event store is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
            self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.positions

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._drain(first)
            self._commit(batch)
            if stop:
                return

    def _drain(self, first: _Append) -> tuple[list[_Append], bool]:
        batch, size = [first], len(first.events)
        while size < self._max:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            size += len(nxt.events)
        return batch, False

    def _commit(self, batch: list[_Append]) -> None:
        try:
            last = self._insert(batch)
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, _ONE_COMMANDS_FAULT):
                # Most likely one command's doing (a version conflict, bad data): retry them one
                # by one, so only that command fails and the others commit.
                for request in batch:
                    self._commit([request])
                return
            error = _reported(exc)
            for request in batch:
                request.error = error
        else:
            self._notify(last)
        for request in batch:
            request.done.set()

    def _notify(self, position: int) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(position)
        except Exception:  # the events are committed; a failing listener must not undo that
            log.exception("commit listener failed")

    def _insert(self, batch: list[_Append]) -> int:
        events = [event for request in batch for event in request.events]
        positions = list(self._recorder.insert_events(events) or [])
        if len(positions) != len(events):
            raise PersistenceError("the recorder did not return a position for every event")
        offset = 0
        for request in batch:
            request.positions = positions[offset : offset + len(request.events)]
            offset += len(request.events)
        return positions[-1]


_ONE_COMMANDS_FAULT = (
    IntegrityError,
    DataError,
    ProgrammingError,
    InternalError,
    NotSupportedError,
)


def _reported(exc: Exception) -> Exception:
    """What the waiting caller is told for a failed append."""
    if isinstance(exc, IntegrityError):
        return ConcurrencyConflict("another command changed the same aggregate first")
    if isinstance(exc, _ONE_COMMANDS_FAULT):
        log.error("append refused by the database: %s", exc)
        return Unavailable("the event store refused the append")
    if isinstance(exc, PersistenceError):
        log.warning("append failed: %s", exc)
        return Unavailable(f"the event store is unavailable: {exc}")
    log.error("append failed", exc_info=exc)  # a bug, not an outage
    return exc
