"""The outbox relay: follows the event store's log and publishes every envelope to RabbitMQ.

It reads from the last position the broker *confirmed* (table ``relay_position``), publishes
with publisher confirms, and records a batch's last position only once the broker has confirmed
it and every batch before it — so a crash in between republishes (consumers drop duplicates) and
never skips. Publishing does not wait for confirms: the next batch is read and sent while earlier
ones are being confirmed (at most ``max_unconfirmed`` messages at a time), and a batch is
whatever the store holds when the relay gets to read — one event when idle, everything that
accumulated meanwhile under load; there is no linger. It wakes on the store's LISTEN/NOTIFY
channel (``store.commits``) and polls as the fallback. On PostgreSQL an advisory lock keeps one
relay active; a second one waits as a hot standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiormq
import anyio.to_thread
import psycopg
from eventsourcing.persistence import Notification
from opentelemetry.trace import SpanKind

from .. import failpoints
from ..config import Settings
from ..store.backends import PostgresBackend
from ..store.commits import CommitWatcher
from ..store.event_store import EventStore
from ..store.outages import Backoff
from ..telemetry import configure_tracing, tracer
from .rabbitmq import Topology, connect, publish_batch, to_publication

log = logging.getLogger(__name__)

RELAY_NAME = "rabbitmq"
_LEADER_LOCK = 0x4C49_5245  # advisory lock id for the active relay ("LIRE")
RECORD_EVERY = 0.1  # seconds, at least, between two writes of the confirmed position
CONFIRM_TIMEOUT = 30.0  # seconds the broker has to confirm a batch before the session restarts


class Relay:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        *,
        poll_interval: float = 1.0,
        max_unconfirmed: int | None = None,
    ) -> None:
        if settings.amqp_url is None:
            raise ValueError("the relay needs LIGHTNING_AMQP_URL")
        self.settings = settings
        self.amqp_url: str = settings.amqp_url
        self.store = store
        self.topology = Topology.from_settings(settings)
        self.batch = settings.relay_batch
        self.poll_interval = poll_interval
        self.max_unconfirmed = max_unconfirmed or 4 * self.batch
        self.published = 0  # messages the broker has confirmed
        self._wake = asyncio.Event()
        self._watcher = CommitWatcher(store.backend, self._wake.set)

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
                async with self._leadership(stop) as lease, self._listening():
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
            await self.topology.declare_exchange(channel)
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)  # what publish_batch writes to
            position = await anyio.to_thread.run_sync(self.position)
            log.info("relay publishing from position %d to %s", position, self.topology.exchange)
            backoff.reset()  # connected to both: the next interruption starts short again
            confirms = _Confirmations(self, _Recorder(self, position), self.max_unconfirmed)
            try:
                while not stop.is_set():
                    # Clear before reading: a NOTIFY arriving during the read then wakes us.
                    self._wake.clear()
                    batch = await anyio.to_thread.run_sync(
                        self.store.read_stored, position, self.batch
                    )
                    await lease.check()
                    if batch:
                        if not await confirms.room(len(batch), stop):
                            break  # stopping: what is unconfirmed goes again next time
                        confirms.add(
                            batch[-1].id, len(batch), await self._publish(underlay, batch, position)
                        )
                        position = batch[-1].id
                    if not batch or (len(batch) < self.batch and not self._woken()):
                        await self._idle(stop, confirms)
                    confirms.check()
            finally:
                await confirms.close()

    def _woken(self) -> bool:
        """Whether the store may hold more than the last read saw: unless the watcher is
        listening and no commit was announced since the read began, it may (read again)."""
        return self._wake.is_set() or not self._watcher.listening

    async def _publish(
        self, channel: aiormq.Channel, batch: list[Notification], previous: int
    ) -> asyncio.Future[list[object]]:
        """Send the batch (in order, on one channel, as one write) without waiting for the
        broker; the future holds each message's confirmation (or its failure)."""
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
            publications = []
            for stored in batch:
                publications.append(to_publication(stored, previous))
                previous = stored.id
            confirmations = await publish_batch(channel, self.topology.exchange, publications)
        return asyncio.ensure_future(_confirmed(confirmations))

    async def _idle(self, stop: asyncio.Event, confirms: _Confirmations) -> None:
        waits = {
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(confirms.failed.wait()),
        }
        _, pending = await asyncio.wait(
            waits, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncIterator[None]:
        """Wake on the store's commits where it announces them; polling covers the rest."""
        if not self._watcher.available:
            yield
            return
        task = asyncio.create_task(self._watcher.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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


async def _confirmed(confirmations: list[asyncio.Future[Any]]) -> list[object]:
    """Each message's confirmation or failure; a broker that confirms nothing of the batch
    within ``CONFIRM_TIMEOUT`` is a failure too (the session ends and the batch goes again)."""
    try:
        async with asyncio.timeout(CONFIRM_TIMEOUT):
            results: list[object] = await asyncio.gather(*confirmations, return_exceptions=True)
            return results
    except TimeoutError:
        for confirmation in confirmations:
            confirmation.cancel()
        return [TimeoutError(f"the broker did not confirm the batch within {CONFIRM_TIMEOUT:g} s")]


class _Confirmations:
    """The batches published and not yet confirmed, in publishing order. A batch's last position
    goes to the recorder once the broker has confirmed all of it and every batch before it; the
    first failure (a nack, a lost connection, a timeout) stops that, and ends the session from
    ``check``: everything after the last recorded position is then published again."""

    def __init__(self, relay: Relay, recorder: _Recorder, limit: int) -> None:
        self._relay = relay
        self._recorder = recorder
        self._limit = limit
        self._pending: deque[tuple[int, int, asyncio.Future[list[object]]]] = deque()
        self._unconfirmed = 0
        self._room = asyncio.Event()
        self.failed = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, last: int, count: int, confirms: asyncio.Future[list[object]]) -> None:
        self._pending.append((last, count, confirms))
        self._unconfirmed += count
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow())

    async def room(self, count: int, stop: asyncio.Event) -> bool:
        """Wait until ``count`` more messages keep the unconfirmed ones within the limit (one
        batch may always go out): False if ``stop`` is set meanwhile."""
        while self._unconfirmed and self._unconfirmed + count > self._limit:
            self.check()
            if stop.is_set():
                return False
            self._room.clear()
            events = (self._room, self.failed, stop)
            waits = {asyncio.ensure_future(e.wait()) for e in events}
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        self.check()
        return not stop.is_set()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    async def _follow(self) -> None:
        while self._pending:
            last, count, confirms = self._pending[0]
            results = await confirms
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                self._error = failures[0]
                self.failed.set()
                return
            self._pending.popleft()
            self._unconfirmed -= count
            self._room.set()
            failpoints.hit("relay.after_confirm")
            self._relay.published += count
            self._recorder.confirmed(last)

    async def close(self) -> None:
        """Stop following (what is unconfirmed is published again by the next session) and
        record the last position confirmed in order."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, _, confirms in self._pending:
            confirms.cancel()
        self._pending.clear()
        await self._recorder.close()


class _Recorder:
    """Records confirmed positions off the publishing path: the next batch is read and published
    while the last one's position is written (at most one write in flight, always the newest
    confirmed position, and at most one every ``RECORD_EVERY`` seconds, so that under load one
    write covers many batches). A crash loses at most what was confirmed since the last write:
    those events are republished, never skipped."""

    def __init__(self, relay: Relay, position: int) -> None:
        self._relay = relay
        self._latest = self._recorded = position
        self._task: asyncio.Task[None] | None = None

    def confirmed(self, position: int) -> None:
        self._latest = position
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(pause=RECORD_EVERY))

    async def _write(self, pause: float = 0.0) -> None:
        while self._recorded < self._latest:
            target = self._latest
            try:
                await anyio.to_thread.run_sync(self._relay.record, target)
            except Exception as exc:  # retried with the next confirm (or at close)
                log.warning("could not record relay position %d: %s", target, exc)
                return
            self._recorded = target
            if pause:
                await asyncio.sleep(pause)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()  # a write in its thread is finished first, not abandoned
            with contextlib.suppress(Exception, asyncio.CancelledError):
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
