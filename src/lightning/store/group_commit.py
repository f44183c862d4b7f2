"""Group commit: appends from concurrent commands share one transaction.

Callers (request threads) hand their events to a single writer thread and wait. While one
transaction is in flight the next callers queue up, and the writer commits all of them together,
so the commit cost (an fsync, and on PostgreSQL the table lock that keeps positions in commit
order) is paid once per batch instead of once per command. Each command's events stay atomic: if
a batch fails on an optimistic-concurrency conflict, the writer retries its commands one by one so
only the conflicting command fails.

An append may carry its command's record (``commands.py``): the recorder writes it with the
events, each command's position taken from its own last event. A batch that fails on a
repeated command id is retried one by one too; the repeat alone fails, with ``RepeatedCommand``
and the first result, told apart from a version conflict by looking the command up (it exists
once the append that applied it committed, and that append held the lock ours waited for).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

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
from .commands import Claim, CommandRecord, RepeatedCommand

log = logging.getLogger(__name__)


@dataclass
class _Append:
    events: Sequence[StoredEvent]
    command: CommandRecord | None = None
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
        find_command: Callable[[str, UUID], CommandRecord | None] | None = None,
    ) -> None:
        """``find_command`` looks an applied command up; without it the recorder must not be
        given commands (eventsourcing's own recorders ignore them)."""
        self._recorder = recorder
        self._find_command = find_command
        self._max = max_batch_events
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Append | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def append(
        self, events: Sequence[StoredEvent], command: CommandRecord | None = None
    ) -> list[int]:
        """Store the events atomically, with ``command``'s row if given; return their
        positions. Blocks until committed. Without events nothing is stored, not even the
        command."""
        if command is not None and self._find_command is None:
            raise TypeError("this writer's recorder keeps no commands")
        if not events:
            return []
        request = _Append(events, command)
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
            error = self._repeat(exc, batch) or _reported(exc)
            for request in batch:
                request.error = error
        else:
            self._notify(last)
        for request in batch:
            request.done.set()

    def _repeat(self, exc: Exception, batch: list[_Append]) -> RepeatedCommand | None:
        """A single command refused by the database because its id was applied before."""
        command = batch[0].command
        if len(batch) > 1 or command is None or not isinstance(exc, IntegrityError):
            return None
        assert self._find_command is not None  # checked in append()
        try:
            first = self._find_command(command.principal, command.command_id)
        except Exception:  # unknown: a conflict is retried, and a retry finds the repeat
            log.warning("could not look up command %s", command.command_id, exc_info=True)
            return None
        return None if first is None else RepeatedCommand(first)

    def _notify(self, position: int) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(position)
        except Exception:  # the events are committed; a failing listener must not undo that
            log.exception("commit listener failed")

    def _insert(self, batch: list[_Append]) -> int:
        events: list[StoredEvent] = []
        claims: list[Claim] = []
        for request in batch:
            events += request.events
            if request.command is not None:
                claims.append(Claim(request.command, last_event=len(events) - 1))
        extra = {"commands": claims} if claims else {}
        positions = list(self._recorder.insert_events(events, **extra) or [])
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
