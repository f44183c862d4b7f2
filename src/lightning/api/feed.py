"""Live event feed for GraphQL subscriptions.

One task per server follows the event store and hands each envelope to the subscriptions that
want it: the filter runs here, so an event wakes only its subscribers. It is woken as soon as
events are committed — by the store's own notifications where it has them (PostgreSQL's
LISTEN/NOTIFY: every process that commits announces it, so this works in distributed mode,
where the server has no bus) and by the in-process bus in embedded mode — and polls only as a
fallback: every ``fallback_interval`` seconds while the store's notifications are being
received, every ``poll_interval`` seconds while they are not (SQLite, or the LISTEN connection
is down). Each subscription has a bounded queue; one that falls ``queue_limit`` events behind
(a client that stopped reading) is dropped and told so (``on_overflow``), and its queue goes
with it. A subscription may start from an earlier position: it replays from the store first,
then continues live without a gap or a duplicate (it skips positions it has already yielded).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread

from ..domain.errors import LightningError
from ..domain.event_types import TypeFilter, matches
from ..store.commits import CommitWatcher
from ..store.envelope import Envelope, Undecodable
from ..store.event_store import EventStore

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1_000
POLL_INTERVAL = 0.25  # seconds between looks at the store when nothing announces commits
FALLBACK_INTERVAL = 5.0  # … and while the store's notifications are being received


class SubscriberTooSlow(LightningError):
    """The subscriber fell ``queue_limit`` events behind (its socket is being closed)."""

    code = "RATE_LIMITED"


class _Subscriber:
    __slots__ = ("accept", "on_overflow", "queue")

    def __init__(
        self, accept: Callable[[Envelope], bool], on_overflow: Callable[[], None], limit: int
    ) -> None:
        self.accept = accept
        self.on_overflow = on_overflow
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue(limit)


class EventFeed:
    def __init__(
        self,
        store: EventStore,
        *,
        poll_interval: float = POLL_INTERVAL,
        fallback_interval: float = FALLBACK_INTERVAL,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        self._store = store
        self._poll = poll_interval
        self._fallback = fallback_interval
        self._watcher = CommitWatcher(store.backend, self._woken)
        self._watching: asyncio.Task[None] | None = None
        self._queue_limit = queue_limit
        self._subscribers: set[_Subscriber] = set()
        self._observers: list[Callable[[Envelope], None]] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._head = 0

    @property
    def head(self) -> int:
        return self._head

    def observe(self, observer: Callable[[Envelope], None]) -> None:
        """Call ``observer`` with every event the feed passes on (on the loop, in order)."""
        self._observers.append(observer)

    def wake_threadsafe(self, *_: Any) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._head = await anyio.to_thread.run_sync(self._store.max_position)
        self._task = asyncio.create_task(self._run(), name="event-feed")
        if self._watcher.available:
            self._watching = asyncio.create_task(self._watcher.run(), name="event-feed-listen")

    async def stop(self) -> None:
        for task in (self._watching, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for subscriber in list(self._subscribers):
            self._drop(subscriber)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            every = self._fallback if self._watcher.listening else self._poll
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # comes as the wake-up does, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._pump()
            except Exception:
                log.exception("event feed failed to read the store; retrying")
                await asyncio.sleep(1)

    async def _pump(self) -> None:
        while True:
            read = functools.partial(self._store.read, self._head, 1000, tolerant=True)
            batch = await anyio.to_thread.run_sync(read)
            if not batch:
                return
            for envelope in batch:
                if isinstance(envelope, Undecodable):
                    log.error("live feed: skipping %s", envelope.error)
                    continue
                for observer in self._observers:
                    observer(envelope)
                for subscriber in list(self._subscribers):
                    if not subscriber.accept(envelope):
                        continue
                    try:
                        subscriber.queue.put_nowait(envelope)
                    except asyncio.QueueFull:
                        self._drop(subscriber)
                        subscriber.on_overflow()
            self._head = batch[-1].position

    def _drop(self, subscriber: _Subscriber) -> None:
        """Forget a subscriber and free its queue; its stream ends when it next reads."""
        self._subscribers.discard(subscriber)
        queue = subscriber.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    async def subscribe(
        self,
        accept: Callable[[Envelope], bool],
        after: int | None = None,
        on_overflow: Callable[[], None] = lambda: None,
    ) -> AsyncIterator[Envelope]:
        """Events ``accept`` wants: from ``after`` (replayed from the store), then live. The
        subscriber joins the live fan-out only once the replay has caught up, so a long replay
        never fills its queue; what passed the feed meanwhile is read from the store."""
        subscriber = _Subscriber(accept, on_overflow, self._queue_limit)
        last = self._head if after is None else after
        try:
            for joined in (False, True):
                if joined:  # atomic with the head the replay reads up to: no await between
                    self._subscribers.add(subscriber)
                async for position, envelope in self._replay(last):
                    last = position
                    if envelope is not None and accept(envelope):
                        yield envelope
            while True:
                item = await subscriber.queue.get()
                if item is None:
                    raise SubscriberTooSlow(
                        "subscription fell too far behind; resubscribe with after"
                    )
                if item.position > last:
                    last = item.position
                    yield item
        finally:
            self._subscribers.discard(subscriber)

    async def _replay(self, after: int) -> AsyncIterator[tuple[int, Envelope | None]]:
        """(position, envelope) for what the store holds after ``after`` up to the feed's head
        (which may move on meanwhile); None for an event this version cannot read."""
        while after < self._head:
            read = functools.partial(self._store.read, after, 500, upto=self._head, tolerant=True)
            batch = await anyio.to_thread.run_sync(read)
            if not batch:
                return
            for envelope in batch:
                after = envelope.position
                yield after, None if isinstance(envelope, Undecodable) else envelope


def matcher(types: TypeFilter | None, aggregate_id: str | None) -> Callable[[Envelope], bool]:
    def accept(envelope: Envelope) -> bool:
        if aggregate_id is not None and str(envelope.aggregate_id) != aggregate_id:
            return False
        return matches(types, envelope.type)

    return accept
