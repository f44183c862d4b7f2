"""Rebuilding handlers' effects from the whole log, in one pass for all of them.

A rebuild is the ordinary consumer (``consumer.Consumer``) over a log it is far behind: one
read of the log for every handler rebuilt, in large batches — each one transaction holding every
handler's rows and tracking position, as always, so a rebuild stopped midway leaves each handler
consistent with its position and the next run (or the normal consumer) goes on from there —
with the next page read while a batch is applied (``read_ahead``) and batches left unpipelined
so that their writes can go in bulk (``Tx.upsert_many``). A poison event is retried and parked
by the consumer's own mechanism, per handler and key, and the others carry on.

Live consumers of the same handlers (distributed mode) are not stopped by it: the reset waits
for their batch in flight (it locks the handlers' tracking rows before it empties anything),
and afterwards every batch, theirs and the rebuild's, locks the tracking rows and continues
exactly from the recorded position, so the two take turns and nothing is applied twice or
skipped; stopping them first just spares the duplicated reading.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass

from ..store.backends import PostgresBackend
from ..store.event_store import EventStore
from . import parking
from .consumer import Consumer, RetryPolicy
from .handler import Handler
from .read_ahead import SharedPages
from .tracking import TrackingStore

BATCH = 5_000  # events per transaction in a rebuild (two such pages held at once)
COLLECT_AFTER = (100_000, 50, 100)  # the cyclic collector's thresholds during a rebuild


@dataclass(frozen=True)
class Rebuilt:
    position: int  # where the handlers stand (the log's head, unless one is still retrying)
    head: int  # the log's head when the rebuild began
    pages: int  # pages of the log read (``SharedPages``): the log was read once if ~ head / batch
    seconds: float


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Let Python's cyclic garbage collector run far less often meanwhile. A rebuild allocates
    millions of short-lived objects (envelopes, rows) that reference counting frees, and with
    the default thresholds the collector's passes over the pages held cost about a quarter of
    its CPU. What existed before is frozen (never scanned meanwhile); all is as before after."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*(max(a, b) for a, b in zip(before, COLLECT_AFTER, strict=True)))
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def reset(tracking: TrackingStore, kind: str, names: Sequence[str], tables: Sequence[str]) -> None:
    """Forget everything the handlers ``names`` applied (their ``tables``) and parked, in one
    transaction that first waits for any batch of theirs in flight."""
    with tracking.transaction(commit=True, durable=True) as tx:
        tracking.positions(tx, names, lock=True)
        tx.empty(tables)
        for name in names:
            tracking.reset(tx, name, ())
            parking.clear(tx, kind, name)


class _Stopped(Exception):
    """Raised in a rebuild's thread after a commit, once another one has failed or stopped."""


def groups_of(handlers: Sequence[Handler], parallel: bool) -> list[list[Handler]]:
    """The handlers split in two for two threads: those that follow every event (the audit
    log: ``types`` None) and the others, whose Python work is of the same order. One group
    when not ``parallel`` or when either side would be empty."""
    every = [h for h in handlers if getattr(h, "types", ()) is None]
    some = [h for h in handlers if getattr(h, "types", ()) is not None]
    return [every, some] if parallel and every and some else [list(handlers)]


def rebuild(
    tracking: TrackingStore,
    events: EventStore,
    kind: str,
    handlers: Sequence[Handler],
    tables: Sequence[str],
    *,
    policy: RetryPolicy,
    batch_size: int = BATCH,
    on_commit: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Rebuilt:
    """Reset ``handlers`` (of consumer kind ``kind``; ``tables`` are theirs) and apply the log
    to them again, up to its head as it is now. ``on_progress(position, head)`` whenever the
    slowest handler moves on; ``on_commit`` as ``Consumer``'s ``on_progress``.

    On PostgreSQL the handlers are split in two consumers (``groups_of``), each on a thread of
    its own and its own connection, given the same pages of the log (``SharedPages``: read and
    decoded once): while one waits for the database, the other works. Each handler's rows and
    position are committed together as always; if one thread fails (or is interrupted), the
    other stops after its batch in flight and the error is raised here."""
    started = clock()
    names = [h.name for h in handlers]
    reset(tracking, kind, names, tables)
    head = events.max_position()
    standing = dict.fromkeys(names, 0)
    lock = threading.Lock()
    stop = threading.Event()

    def committed(name: str, position: int) -> None:
        if on_commit is not None:
            on_commit(name, position)
        with lock:
            slowest = min(standing.values())
            standing[name] = position
            now = min(standing.values())
        if on_progress is not None and now > slowest:
            on_progress(now, head)
        if stop.is_set():
            raise _Stopped

    groups = groups_of(handlers, isinstance(tracking.backend, PostgresBackend))
    pages = SharedPages(events, batch_size, readers=len(groups))
    consumers = [
        Consumer(
            kind,
            group,
            tracking,
            events,
            policy=policy,
            batch_size=batch_size,
            on_progress=committed,
            clock=clock,
            read_ahead=pages.reader(index),
            pipelined=False,
        )
        for index, group in enumerate(groups)
    ]

    def run(index: int) -> int:
        try:
            return run_to_head(consumers[index], clock, head=head)
        finally:
            pages.leave(index)

    try:
        with fewer_collections():
            alone = len(consumers) == 1
            position = run(0) if alone else _in_threads(run, len(consumers), stop, pages.close)
    finally:
        pages.close()
    return Rebuilt(position, head, pages.pages_read, clock() - started)


def _in_threads(
    run: Callable[[int], int], count: int, stop: threading.Event, stopping: Callable[[], None]
) -> int:
    """``run(0)`` … ``run(count - 1)`` on threads of their own: the lowest position they
    reached. The first error (or a KeyboardInterrupt here) stops the others — after their
    batch in flight, or at once if they wait for a page (``stopping`` wakes them) — and is
    raised once they have."""
    with ThreadPoolExecutor(count, thread_name_prefix="rebuild") as pool:
        running = [pool.submit(run, index) for index in range(count)]
        try:
            done, _ = wait(running, return_when=FIRST_EXCEPTION)
            failed = next((f for f in running if f in done and f.exception()), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
        except BaseException:
            stop.set()
            stopping()
            wait(running)
            raise
        return min(f.result() for f in running)


def run_to_head(
    consumer: Consumer, clock: Callable[[], float] = time.monotonic, *, head: int | None = None
) -> int:
    """Catch up to the store's head as it is now, waiting out a failing handler's retries
    (so a poison event is parked, not left behind). For rebuilds and tests."""
    if head is None:
        head = consumer.events.max_position()
    while True:
        consumer.catch_up(upto=head)
        if min(consumer.positions().values(), default=head) >= head:
            return head
        due = consumer.next_retry()
        if due is None:
            return consumer.position()
        time.sleep(max(0.0, due - clock()))
