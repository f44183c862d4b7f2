"""The outbox relay: follows the event store's log and publishes every envelope to RabbitMQ.

It reads from the last position the broker *confirmed* (table ``relay_position``), publishes a
batch with publisher confirms, and only then records the batch's last position — so a crash
between the two republishes (consumers drop duplicates) and never skips. It wakes on the store's
LISTEN/NOTIFY channel and polls as the fallback. On PostgreSQL an advisory lock keeps one relay
active; a second one waits as a hot standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import psycopg
from aio_pika.abc import AbstractExchange
from eventsourcing.persistence import Notification
from opentelemetry.trace import SpanKind

from .. import failpoints
from ..config import Settings
from ..store.backends import PostgresBackend
from ..store.event_store import EventStore
from ..store.outages import Backoff
from ..telemetry import configure_tracing, tracer
from .rabbitmq import Topology, connect, to_message

log = logging.getLogger(__name__)

RELAY_NAME = "rabbitmq"
_LEADER_LOCK = 0x4C49_5245  # advisory lock id for the active relay ("LIRE")


class Relay:
    def __init__(
        self, settings: Settings, store: EventStore, *, poll_interval: float = 1.0
    ) -> None:
        if settings.amqp_url is None:
            raise ValueError("the relay needs LIGHTNING_AMQP_URL")
        self.settings = settings
        self.amqp_url: str = settings.amqp_url
        self.store = store
        self.topology = Topology.from_settings(settings)
        self.batch = settings.relay_batch
        self.poll_interval = poll_interval
        self.published = 0
        self._wake = asyncio.Event()

    # ---- position -------------------------------------------------------------------------------

    def position(self) -> int:
        with self.store.backend.transaction(commit=False) as tx:
            row = tx.one("SELECT position FROM relay_position WHERE name = ?", (RELAY_NAME,))
        return int(row["position"]) if row else 0

    def record(self, position: int) -> None:
        with self.store.backend.transaction() as tx:
            if isinstance(self.store.backend, PostgresBackend):
                # Losing the last position on a crash only means republishing (deduplicated).
                tx.execute("SET LOCAL synchronous_commit TO OFF")
            tx.execute(
                "INSERT INTO relay_position (name, position, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
                " updated_at = excluded.updated_at"
                " WHERE relay_position.position < excluded.position",
                (RELAY_NAME, position, datetime.now(UTC).isoformat()),
            )

    # ---- running --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        configure_tracing("lightning-relay")
        backoff = Backoff()
        while not stop.is_set():
            try:
                # Leadership is won (or waited for) again after any failure, including the loss
                # of the lock's own connection.
                async with self._leadership(stop) as lease, self._listening(stop):
                    await self._relay(stop, lease, backoff)
            except Exception as exc:
                delay = backoff.next()
                log.warning(
                    "relay interrupted (%s: %s); retrying in %.2fs", type(exc).__name__, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _relay(self, stop: asyncio.Event, lease: _Lease, backoff: Backoff) -> None:
        connection = await connect(self.amqp_url, "lightning-relay", stop)
        if connection is None:
            return
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await self.topology.declare_exchange(channel)
            position = await anyio.to_thread.run_sync(self.position)
            log.info("relay publishing from position %d to %s", position, self.topology.exchange)
            backoff.reset()  # connected to both: the next interruption starts short again
            recorder = _Recorder(self, position)
            try:
                while not stop.is_set():
                    # Clear before reading: a NOTIFY arriving during the read then wakes us.
                    self._wake.clear()
                    batch = await anyio.to_thread.run_sync(
                        self.store.read_stored, position, self.batch
                    )
                    await lease.check()
                    if not batch:
                        await self._idle(stop)
                        continue
                    await self._publish(exchange, batch, position)
                    failpoints.hit("relay.after_confirm")
                    position = batch[-1].id
                    recorder.confirmed(position)
                    self.published += len(batch)
            finally:
                await recorder.close()

    async def _publish(
        self, exchange: AbstractExchange, batch: list[Notification], previous: int
    ) -> None:
        with tracer.start_as_current_span(
            f"send {self.topology.exchange}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topology.exchange,
                "messaging.batch.message_count": len(batch),
            },
        ):
            confirms = []
            for stored in batch:
                message = to_message(stored, previous)
                confirms.append(exchange.publish(message, routing_key=stored.topic, timeout=30))
                previous = stored.id
            # Every publish must be confirmed (ack) by the broker before the position moves.
            await asyncio.gather(*confirms)

    async def _idle(self, stop: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waits, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    @contextlib.asynccontextmanager
    async def _listening(self, stop: asyncio.Event) -> AsyncIterator[None]:
        """Wake on the store's NOTIFY (PostgreSQL); polling covers everything else."""
        backend = self.store.backend
        if not isinstance(backend, PostgresBackend):
            yield
            return
        task = asyncio.create_task(self._listen(backend, stop))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, backend: PostgresBackend, stop: asyncio.Event) -> None:
        channel = backend.recorder.channel_name  # eventsourcing NOTIFYs it on every insert
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    backend.location.conninfo(), autocommit=True
                ) as conn:
                    await conn.execute(f'LISTEN "{channel}"')
                    async for _ in conn.notifies():
                        self._wake.set()
            except psycopg.Error as exc:
                log.warning("LISTEN %s failed (%s); polling meanwhile", channel, exc)
                await asyncio.sleep(0.5)

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[_Lease]:
        """Hold a session advisory lock while relaying (PostgreSQL), so one relay is active."""
        backend = self.store.backend
        if not isinstance(backend, PostgresBackend):
            yield _Lease(None)
            return
        conn = await psycopg.AsyncConnection.connect(backend.location.conninfo(), autocommit=True)
        try:
            announced = False
            while not stop.is_set():
                cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
                row = await cursor.fetchone()
                if row and row[0]:
                    break
                if not announced:
                    log.info("another relay is active; standing by")
                    announced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
            yield _Lease(conn)
        finally:
            await conn.close()


class _Recorder:
    """Records confirmed positions off the publishing path: the next batch is read and published
    while the last one's position is written (at most one write in flight, always the newest
    confirmed position). A crash loses at most the writes in flight: those events are
    republished, never skipped."""

    def __init__(self, relay: Relay, position: int) -> None:
        self._relay = relay
        self._latest = self._recorded = position
        self._task: asyncio.Task[None] | None = None

    def confirmed(self, position: int) -> None:
        self._latest = position
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write())

    async def _write(self) -> None:
        while self._recorded < self._latest:
            target = self._latest
            try:
                await anyio.to_thread.run_sync(self._relay.record, target)
            except Exception as exc:  # retried with the next confirm (or at close)
                log.warning("could not record relay position %d: %s", target, exc)
                return
            self._recorded = target

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._write()


class _Lease:
    """The advisory lock's connection: if it is gone, so is the lock (PostgreSQL released it and
    a standby may be relaying), so ``check`` raises and the relay stops and competes again."""

    def __init__(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        self._conn = conn
        self._checked = time.monotonic()

    async def check(self, every: float = 1.0) -> None:
        if self._conn is None or time.monotonic() - self._checked < every:
            return
        await self._conn.execute("SELECT 1")
        self._checked = time.monotonic()
