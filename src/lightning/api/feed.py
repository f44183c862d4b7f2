"""Live event feed for GraphQL subscriptions.

One task per server follows the event store (woken by the in-process bus after each commit, or
by polling in distributed mode) and fans envelopes out to per-subscription queues. A subscription
may start from an earlier position: it replays from the store first, then continues live without
a gap or a duplicate (it skips positions it has already yielded).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.to_thread

from ..domain.event_types import TypeFilter, matches
from ..store.envelope import Envelope, Undecodable
from ..store.event_store import EventStore

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000


class SubscriberTooSlow(Exception):
    pass


class EventFeed:
    def __init__(self, store: EventStore, *, poll_interval: float = 0.25) -> None:
        self._store = store
        self._poll = poll_interval
        self._queues: set[asyncio.Queue[Envelope | None]] = set()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._head = 0

    def wake_threadsafe(self, *_: Any) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._head = await anyio.to_thread.run_sync(self._store.max_position)
        self._task = asyncio.create_task(self._run(), name="event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for q in list(self._queues):
            q.put_nowait(None)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
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
                for q in list(self._queues):
                    try:
                        q.put_nowait(envelope)
                    except asyncio.QueueFull:
                        self._queues.discard(q)
                        q.get_nowait()
                        q.put_nowait(None)  # tell that subscriber it fell behind
            self._head = batch[-1].position

    async def subscribe(
        self, accept: Callable[[Envelope], bool], after: int | None = None
    ) -> AsyncIterator[Envelope]:
        q: asyncio.Queue[Envelope | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(q)
        try:
            last = self._head if after is None else after
            if after is not None:
                while last < self._head:
                    read = functools.partial(
                        self._store.read, last, 500, upto=self._head, tolerant=True
                    )
                    batch = await anyio.to_thread.run_sync(read)
                    if not batch:
                        break
                    for envelope in batch:
                        if accept(envelope) and not isinstance(envelope, Undecodable):
                            yield envelope
                    last = batch[-1].position
            while True:
                item = await q.get()
                if item is None:
                    raise SubscriberTooSlow(
                        "subscription fell too far behind; resubscribe with after"
                    )
                if item.position <= last:
                    continue
                last = item.position
                if accept(item):
                    yield item
        finally:
            self._queues.discard(q)


def matcher(types: TypeFilter | None, aggregate_id: str | None) -> Callable[[Envelope], bool]:
    def accept(envelope: Envelope) -> bool:
        if aggregate_id is not None and str(envelope.aggregate_id) != aggregate_id:
            return False
        return matches(types, envelope.type)

    return accept
