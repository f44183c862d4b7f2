"""Followers of the log act on a lone event at once, on the store's own notification (PostgreSQL
LISTEN/NOTIFY), not on a poll: the live feed of a server in distributed mode (which has no
in-process bus) and the outbox relay. Each poll here is an hour, so an event that arrives at all
arrived because it was pushed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest

from lightning.api.feed import EventFeed
from lightning.bootstrap import Lightning
from lightning.bus import relay as relay_module
from lightning.bus.rabbitmq import Topology
from lightning.bus.relay import Relay
from lightning.services import SYSTEM, Context
from lightning.store.envelope import Envelope

from .cluster import Cluster

CTX = Context(SYSTEM)
GROK = {"provider": "grok", "model": "grok-code-fast-1"}
HOUR = 3600.0


async def register(app: Lightning, name: str) -> int:
    result = await asyncio.to_thread(app.agents.register, CTX, name=name, **GROK)
    return result.position


async def test_the_live_feed_in_distributed_mode_is_woken_by_the_store(cluster: Cluster) -> None:
    app = cluster.open()  # distributed settings: no in-process bus to wake the feed
    feed = EventFeed(app.store, poll_interval=HOUR, fallback_interval=HOUR)
    try:
        assert app.bus is None
        await feed.start()
        events = feed.subscribe(lambda e: e.type == "agent.registered", after=feed.head)
        first = await register(app, "first")
        got: Envelope = await asyncio.wait_for(anext(events), 10)
        assert got.position == first
        await asyncio.sleep(0.2)  # idle: the next one must not wait for a poll either
        second = await register(app, "second")
        got = await asyncio.wait_for(anext(events), 10)
        assert got.position == second
        await events.aclose()
    finally:
        await feed.stop()
        await asyncio.to_thread(app.close)


@contextlib.asynccontextmanager
async def relaying(relay: Relay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_the_relay_publishes_a_lone_event_at_once(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay installs a tracer provider for its process; not for the tests' process.
    monkeypatch.setattr(relay_module, "configure_tracing", lambda _service: None)
    app = cluster.open()
    topology = Topology.from_settings(cluster.settings())
    connection = await aio_pika.connect(cluster.amqp_url)
    try:
        channel = await connection.channel()
        queue = await topology.declare_queue(channel, "pushed-test")
        relay = Relay(app.settings, app.store, poll_interval=HOUR)
        async with relaying(relay), queue.iterator() as messages:
            for name in ("first", "second"):
                position = await register(app, name)
                while True:  # the name reservation comes first, then agent.registered
                    message = await asyncio.wait_for(anext(messages), 10)
                    await message.ack()
                    if message.headers["position"] == position:
                        break
                await asyncio.sleep(0.2)  # idle in between
    finally:
        with contextlib.suppress(Exception):
            await topology.delete(connection, ["pushed-test"])
        await connection.close()
        await asyncio.to_thread(app.close)
