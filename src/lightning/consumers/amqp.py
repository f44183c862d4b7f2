"""Runs a Consumer on its RabbitMQ queue (``<prefix>.<kind>``).

At start it catches up from the store (so nothing published while it was down, or before its
queue existed, is missed), then consumes: messages are taken in batches (as many as are waiting,
up to the prefetch), applied in one transaction through the Consumer (which drops duplicates,
fills gaps from the store, retries and parks what a handler cannot apply) and acknowledged after
the commit. A message that is not an event envelope is rejected to the dead-letter queue at
once. Database outages are retried with a short backoff without spending deliveries; anything
else escaping a batch (not a handler's failure: those are retried and parked) is negatively
acknowledged and redelivered until the queue's delivery limit dead-letters the message, which
loses nothing: the store holds the events, and the next delivery or restart reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiormq
import anyio.to_thread
from aiormq.abc import DeliveredMessage
from tenacity import AsyncRetrying, retry_if_exception

from ..bus.delivery import Delivery
from ..bus.rabbitmq import MalformedMessage, Topology, closed_event, connect, to_delivery
from ..config import Settings
from ..store.outages import OUTAGE_WAIT, Backoff, is_retryable
from .consumer import HEARTBEAT_SECONDS, Consumer

log = logging.getLogger(__name__)

_STOPPED = object()
_RETRY_DUE = object()


class QueueConsumer:
    def __init__(self, settings: Settings, consumer: Consumer) -> None:
        if settings.amqp_url is None:
            raise ValueError("a queue consumer needs LIGHTNING_AMQP_URL")
        self.amqp_url: str = settings.amqp_url
        self.consumer = consumer
        self.topology = Topology.from_settings(settings)
        self.prefetch = settings.prefetch
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()

    @property
    def name(self) -> str:
        return self.consumer.name

    async def run(self, stop: asyncio.Event) -> None:
        self._stopping = stop
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.2
            except Exception as exc:
                log.warning(
                    "%s: session ended (%s: %s); reconnecting", self.name, type(exc).__name__, exc
                )
                self.consumer.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection's life: declare, catch up from the store, consume until it closes."""
        connection = await connect(self.amqp_url, f"lightning-{self.name}", stop)
        if connection is None:
            return
        closed = closed_event(connection)
        async with connection:
            self._inbox = asyncio.Queue()  # deliveries of an old channel can't be acked here
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await self.topology.declare_queue(channel, self.name)
            # The queue exists now, so anything published from here on waits in it; what came
            # before (while we were down, or before the queue existed) is read from the store.
            if not await self._catch_up(stop):
                return
            # Consumed on aiormq's channel underneath: a delivery is then one task and the
            # frames' own DeliveredMessage, where aio-pika adds a second task and its
            # IncomingMessage (together ~15 % of this process's CPU under load).
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            await underlay.basic_consume(queue.name, self._received)
            beats = asyncio.create_task(self._heartbeats(stop))
            try:
                await self._process(stop, closed, underlay)
            finally:
                beats.cancel()

    async def _received(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(message)

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await anyio.to_thread.run_sync(self.consumer.heartbeat)
            except Exception as exc:  # the next one may succeed; batches report their own errors
                log.warning("%s: heartbeat failed: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)

    async def _catch_up(self, stop: asyncio.Event) -> bool:
        """Apply what the store holds beyond our position; retry until it works."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self._call_db(self.consumer.catch_up)
                return True
            except Exception:
                log.exception("%s: catching up from the store failed", self.name)
                self.consumer.reset()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())
        return False

    async def _process(
        self, stop: asyncio.Event, closed: asyncio.Event, channel: aiormq.Channel
    ) -> None:
        backoff = Backoff()
        while not stop.is_set():
            first = await self._next(stop, closed)
            if first is _STOPPED:
                return
            if first is _RETRY_DUE:
                await self._call_db(self.consumer.catch_up)  # a failing handler's next try
                continue
            assert isinstance(first, DeliveredMessage)
            batch = [first]
            while len(batch) < self.prefetch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            if await self._handle(channel, batch):
                backoff.reset()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next())

    async def _next(self, stop: asyncio.Event, closed: asyncio.Event) -> object:
        """The next message, or _RETRY_DUE when a failing handler is due to try again, or
        _STOPPED."""
        if not self._inbox.empty() and not stop.is_set() and not closed.is_set():
            return self._inbox.get_nowait()  # under load: no waiting, nothing to set up
        getter = asyncio.ensure_future(self._inbox.get())
        stopper = asyncio.ensure_future(stop.wait())
        closer = asyncio.ensure_future(closed.wait())
        done, _ = await asyncio.wait(
            {getter, stopper, closer},
            timeout=self._until_retry(),
            return_when=asyncio.FIRST_COMPLETED,
        )
        stopper.cancel()
        closer.cancel()
        if getter in done:
            return getter.result()
        getter.cancel()
        if closed.is_set() and not stop.is_set():
            raise ConnectionError("connection to the broker closed")
        return _STOPPED if stop.is_set() else _RETRY_DUE

    def _until_retry(self) -> float | None:
        due = self.consumer.next_retry()
        return None if due is None else max(0.0, due - time.monotonic())

    async def _handle(self, channel: aiormq.Channel, batch: list[DeliveredMessage]) -> bool:
        deliveries: list[Delivery] = []
        good: list[int] = []  # delivery tags
        for message in batch:
            tag = message.delivery_tag
            assert tag is not None  # a consumer's delivery has one
            try:
                deliveries.append(to_delivery(message))
                good.append(tag)
            except MalformedMessage as exc:
                message_id = message.header.properties.message_id
                log.error("%s: dead-lettering message %s: %s", self.name, message_id, exc)
                await channel.basic_reject(tag, requeue=False)
        if not good:
            return True
        try:
            await self._call_db(self.consumer.deliver, deliveries)
        except Exception:
            # Not a handler's failure (those are retried and parked inside the consumer):
            # redelivered until the delivery limit dead-letters it; the store keeps the events.
            log.exception("%s: applying %d event(s) failed", self.name, len(good))
            self.consumer.reset()
            for tag in good:
                await channel.basic_nack(tag, requeue=True)
            return False
        # One ack for the batch: the messages arrived in this order on this channel, and the
        # malformed ones among them were already rejected.
        await channel.basic_ack(good[-1], multiple=True)
        return True

    async def _call_db(self, fn: Callable[..., int], *args: object) -> int:
        """Run a store call in a thread, riding out database outages with backoff for as long
        as they last (unacknowledged messages just wait; no delivery is spent)."""
        try:  # the first try without the retrying machinery: it almost always succeeds
            return await anyio.to_thread.run_sync(fn, *args)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            self.consumer.reset()  # re-read the recorded positions on the next try
        stopping = self._stopping
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=OUTAGE_WAIT,
            stop=lambda _state: stopping.is_set(),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s: database unavailable (%s); retrying",
                self.name,
                state.outcome.exception() if state.outcome else "?",
            ),
        ):
            with attempt:
                try:
                    return await anyio.to_thread.run_sync(fn, *args)
                except Exception as exc:
                    if is_retryable(exc):
                        self.consumer.reset()  # re-read the recorded positions on the next try
                    raise
        raise AssertionError("unreachable")
