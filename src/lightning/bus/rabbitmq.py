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
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)
from aiormq.abc import ChannelFrame, DeliveredMessage
from aiormq.exceptions import AMQPError
from eventsourcing.persistence import Notification
from opentelemetry import propagate
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
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


@dataclass(frozen=True, slots=True)
class Publication:
    """One event's message, ready for the wire."""

    routing_key: str
    body: bytes
    properties: spec.Basic.Properties


def to_publication(notification: Notification, previous: int) -> Publication:
    """The message for one stored event (body: its public envelope; see the module docstring). An
    event this version cannot read goes out as its ``Undecodable`` stand-in (marked in the
    header ``undecodable``): the relay never stops at one event, and consumers park it. The
    properties are what ``aio_pika.Message`` would build (persistent, JSON), made directly."""
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
    return Publication(
        notification.topic,
        body,
        spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
            message_id=message_id,
            correlation_id=correlation_id,
            message_type=notification.topic,
            timestamp=datetime.now(UTC),
            headers=headers,
            app_id="lightning-relay",
        ),
    )


async def publish_batch(
    channel: aiormq.Channel, exchange: str, publications: Sequence[Publication]
) -> list[asyncio.Future[Any]]:
    """Publish ``publications`` in order, ``mandatory``, on a channel in confirm mode, as one
    write: the same frames and bookkeeping as aiormq's ``basic_publish`` once per message (a
    delivery tag, a confirmation future, the message id for a return), but under one hold of
    the channel's lock and with the frames of the whole batch marshalled and queued together,
    which costs a fraction of the per-message calls (their lock, timeout scope, future for the
    drain and task each). Returns each message's confirmation: an ack's frame, a returned
    (unroutable) message (or ``PublishError``, as the channel's ``on_return_raises`` says), or
    the failure (a nack, the channel's closing) as its exception.

    This reaches into ``aiormq.Channel`` (``delivery_tag``, ``confirmations``,
    ``message_id_delivery_tag``, ``write_queue``), the attributes its own ``basic_publish``
    uses (aiormq 7.2); the relay's integration tests hold it to acks, returns and restarts.
    """
    if not channel.publisher_confirms:
        raise ValueError("publish_batch needs a channel in confirm mode")
    frames: list[Any] = []
    confirmations: list[asyncio.Future[Any]] = []
    async with channel.lock:
        first = channel.delivery_tag
        try:
            for publication in publications:
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                message_id = publication.properties.message_id
                assert message_id is not None  # a return finds its confirmation by it
                confirmation = channel.create_future()
                channel.confirmations[tag] = confirmation
                channel.message_id_delivery_tag[message_id] = tag
                confirmation.add_done_callback(
                    functools.partial(_forget_message_id, channel, message_id, tag)
                )
                confirmations.append(confirmation)
                frames.append(
                    spec.Basic.Publish(
                        exchange=exchange, routing_key=publication.routing_key, mandatory=True
                    )
                )
                frames.append(
                    ContentHeader(
                        properties=publication.properties, body_size=len(publication.body)
                    )
                )
                frames += _body_frames(channel, publication.body)
            await channel.write_queue.put(
                ChannelFrame.marshall(channel_number=channel.number, frames=frames)
            )
        except BaseException:
            # Nothing of the batch reached the connection's writer: give its tags back.
            for tag in range(first + 1, channel.delivery_tag + 1):
                channel.confirmations.pop(tag, None)
            channel.delivery_tag = first
            for confirmation in confirmations:
                confirmation.cancel()
            raise
    return confirmations


def _forget_message_id(channel: aiormq.Channel, message_id: str, tag: int, _: object) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        del channel.message_id_delivery_tag[message_id]


def _body_frames(channel: aiormq.Channel, body: bytes) -> list[ContentBody]:
    if not body:
        return []
    size = channel.max_content_size
    return [ContentBody(body[i : i + size]) for i in range(0, len(body), size)]


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


def to_delivery(message: AbstractIncomingMessage | DeliveredMessage) -> Delivery:
    """Decode a message; MalformedMessage if it is not an event envelope Lightning published."""
    try:
        envelope = Envelope.model_validate_json(message.body)
    except (ValueError, ValidationError) as exc:
        raise MalformedMessage(f"not an event envelope: {exc}") from exc
    return Delivery(envelope)
