"""RabbitMQ topology and the wire format of an event message.

* Topic exchange ``lightning.events`` (durable); routing key = event type.
* One durable **quorum** queue per consumer, ``<prefix>.<name>`` (``lightning.projections`` for
  the projection builders; sagas and webhooks get their own), with single active
  consumer (so one process applies a queue, in order, and another takes over if it dies), an
  explicit ``x-delivery-limit`` (RabbitMQ 3.10 has none by default; 4.x defaults to 20) and a
  dead-letter exchange, so a message that keeps failing ends in ``<queue>.dead`` instead of
  looping for ever or being dropped.
* Message: body = the envelope JSON in its public form (``data`` without secret hashes,
  DESIGN §3; Lightning's own consumers take a message only as a wake-up and read the store's
  full copy); persistent; ``message_id`` = event id; headers carry the ``position``, the
  ``previous_position`` the relay published before it (for consumers outside Lightning that
  want to detect a gap; Lightning's own read the store) and the W3C trace context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.exceptions import AMQPError
from eventsourcing.persistence import Notification
from opentelemetry import propagate
from pydantic import ValidationError

from ..config import Settings
from ..store.envelope import Envelope, Undecodable, wire_json
from .delivery import Delivery

DEAD_LETTER_EXCHANGE_SUFFIX = ".dead-letter"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topology:
    exchange: str
    queue_prefix: str
    delivery_limit: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(settings.exchange, settings.queue_prefix, settings.delivery_limit)

    @property
    def dead_letter_exchange(self) -> str:
        return self.exchange + DEAD_LETTER_EXCHANGE_SUFFIX

    def queue_name(self, name: str) -> str:
        return f"{self.queue_prefix}.{name}"

    async def declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def declare_queue(
        self, channel: AbstractChannel, name: str, binding: str = "#"
    ) -> AbstractQueue:
        exchange = await self.declare_exchange(channel)
        dead_exchange = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue_name = self.queue_name(name)
        dead = await channel.declare_queue(
            f"{queue_name}.dead",
            durable=True,
            # Dead letters are for inspection (the store holds every event regardless), so a
            # flood of garbage must not fill the broker's disk: keep the newest 100,000.
            arguments={"x-queue-type": "quorum", "x-max-length": 100_000},
        )
        await dead.bind(dead_exchange, routing_key=queue_name)
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-single-active-consumer": True,
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dead_letter_exchange,
                "x-dead-letter-routing-key": queue_name,
            },
        )
        await queue.bind(exchange, routing_key=binding)
        return queue

    async def delete(self, connection: AbstractConnection, consumers: Sequence[str]) -> None:
        """Remove the consumers' queues (and dead-letter queues) and the exchanges: for tests,
        benchmarks and tearing down a deployment. Each deletion gets its own channel, since a
        broker error closes the channel it happened on."""
        names = [
            q
            for name in consumers
            for q in (self.queue_name(name), f"{self.queue_name(name)}.dead")
        ]
        for name, is_queue in [(q, True) for q in names] + [
            (self.exchange, False),
            (self.dead_letter_exchange, False),
        ]:
            try:
                async with await connection.channel() as channel:
                    if is_queue:
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
            except AMQPError as exc:
                log.warning("could not delete %s: %s", name, exc)


def to_message(notification: Notification, previous: int) -> aio_pika.Message:
    """The message for one stored event (body: its public envelope; see the module docstring). An
    event this version cannot read goes out as its ``Undecodable`` stand-in (marked in the
    header ``undecodable``): the relay never stops at one event, and consumers park it."""
    headers: dict[str, Any] = {"position": notification.id, "previous_position": previous}
    try:
        body, fields = wire_json(notification, notification.id)
        message_id, correlation_id = str(fields["id"]), str(fields["correlation_id"])
    except (ValueError, KeyError, TypeError) as exc:
        stand_in = Undecodable.of(notification, f"{type(exc).__name__}: {exc}")
        body = stand_in.public_json().encode()
        message_id, correlation_id = str(stand_in.id), str(stand_in.correlation_id)
        headers["undecodable"] = stand_in.error[:500]
    propagate.inject(headers)
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        type=notification.topic,
        timestamp=datetime.now(UTC),
        headers=headers,
        app_id="lightning-relay",
    )


async def connect(url: str, name: str, stop: asyncio.Event) -> AbstractConnection | None:
    """Connect, retrying with backoff while the broker is unreachable; None if stopped first.

    Deliberately a plain connection rather than ``connect_robust``: callers run a *session*
    (declare, catch up from the store, consume or publish) and start a new one when the
    connection drops, which also re-checks the store for anything missed meanwhile. (Robust
    channels failed to restore their consumers after a broker restart in our fault tests.)
    """
    backoff = 0.2
    while not stop.is_set():
        try:
            return await aio_pika.connect(
                url, timeout=10, client_properties={"connection_name": name}
            )
        except (TimeoutError, OSError, AMQPError) as exc:
            log.warning("%s: broker unreachable (%s); retrying in %.1fs", name, exc, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
    return None


def closed_event(connection: AbstractConnection) -> asyncio.Event:
    """An event set when the connection closes for any reason."""
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    return closed


class MalformedMessage(ValueError):
    pass


def to_delivery(message: AbstractIncomingMessage) -> Delivery:
    """Decode a message; MalformedMessage if it is not an event envelope Lightning published."""
    try:
        envelope = Envelope.model_validate_json(message.body)
    except (ValueError, ValidationError) as exc:
        raise MalformedMessage(f"not an event envelope: {exc}") from exc
    return Delivery(envelope)
