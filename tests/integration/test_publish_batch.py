"""The relay's batch publisher on the real broker: one write for many messages, each with its
own confirmation, in order, whatever the body's size, and a return for what nothing is bound
to — the same outcomes as aiormq's ``basic_publish`` once per message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
from pamqp import commands as spec

from lightning.bus.rabbitmq import Publication, publish_batch


def publication(routing_key: str, body: bytes, **headers: Any) -> Publication:
    return Publication(
        routing_key,
        body,
        spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=2,
            message_id=str(uuid.uuid4()),
            headers=headers,
        ),
    )


def on_broker(amqp_url: str, test: Callable[..., Awaitable[None]]) -> None:
    """Run ``test(underlay channel, queue, exchange name)`` against a fresh exchange and an
    exclusive queue bound to ``bound.#``, deleting the exchange afterwards."""

    async def run() -> None:
        exchange_name = f"test-publish-batch-{uuid.uuid4().hex[:12]}"
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                exchange_name, aio_pika.ExchangeType.TOPIC, auto_delete=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="bound.#")
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            try:
                await test(underlay, queue, exchange_name)
            finally:
                await channel.exchange_delete(exchange_name)

    asyncio.run(run())


async def received(queue: aio_pika.abc.AbstractQueue, count: int) -> list[Any]:
    messages = []
    async with queue.iterator() as incoming:
        async for message in incoming:
            messages.append(message)
            await message.ack()
            if len(messages) == count:
                break
    return messages


def test_every_message_is_confirmed_and_arrives_in_order_with_its_properties(
    amqp_url: str,
) -> None:
    async def test(channel: aiormq.Channel, queue: Any, exchange: str) -> None:
        big = b"x" * (3 * channel.max_content_size + 17)  # four body frames
        batch = [publication("bound.small", f"{i}".encode(), position=i) for i in range(200)]
        batch.insert(100, publication("bound.big", big, position=-1))
        confirmations = await publish_batch(channel, exchange, batch)
        results = await asyncio.wait_for(asyncio.gather(*confirmations), 30)
        assert all(isinstance(r, spec.Basic.Ack) for r in results)
        messages = await asyncio.wait_for(received(queue, len(batch)), 30)
        assert [m.body for m in messages] == [p.body for p in batch]
        assert [m.message_id for m in messages] == [p.properties.message_id for p in batch]
        assert [m.routing_key for m in messages] == [p.routing_key for p in batch]
        assert all(m.delivery_mode == 2 for m in messages)
        assert messages[0].headers == {"position": 0}
        assert not channel.confirmations and not channel.message_id_delivery_tag

    on_broker(amqp_url, test)


def test_an_unroutable_message_is_returned_and_the_rest_confirmed(amqp_url: str) -> None:
    async def test(channel: aiormq.Channel, queue: Any, exchange: str) -> None:
        batch = [
            publication("bound.first", b"1"),
            publication("nowhere", b"2"),
            publication("bound.third", b"3"),
        ]
        results = await asyncio.wait_for(
            asyncio.gather(*await publish_batch(channel, exchange, batch)), 30
        )
        assert isinstance(results[0], spec.Basic.Ack)
        assert isinstance(results[1], aiormq.abc.DeliveredMessage)  # returned, not acked
        assert results[1].body == b"2"
        assert isinstance(results[2], spec.Basic.Ack)
        assert [m.body for m in await asyncio.wait_for(received(queue, 2), 30)] == [b"1", b"3"]

    on_broker(amqp_url, test)


def test_the_channel_goes_on_with_single_publishes_after_a_batch(amqp_url: str) -> None:
    """The delivery tags the batch took are the channel's own: aiormq's next publish follows."""

    async def test(channel: aiormq.Channel, queue: Any, exchange: str) -> None:
        await asyncio.gather(
            *await publish_batch(channel, exchange, [publication("bound.a", b"a")] * 1)
        )
        confirm = await channel.basic_publish(
            b"b",
            exchange=exchange,
            routing_key="bound.b",
            properties=spec.Basic.Properties(message_id=str(uuid.uuid4())),
            timeout=30,
        )
        assert isinstance(confirm, spec.Basic.Ack)
        confirmations = await publish_batch(
            channel, exchange, [publication("bound.c", b"c"), publication("bound.d", b"d")]
        )
        assert all(isinstance(r, spec.Basic.Ack) for r in await asyncio.gather(*confirmations))
        messages = await asyncio.wait_for(received(queue, 4), 30)
        assert [m.body for m in messages] == [b"a", b"b", b"c", b"d"]
        assert channel.delivery_tag == 4

    on_broker(amqp_url, test)
