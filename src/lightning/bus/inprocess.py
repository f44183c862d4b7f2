"""The embedded transport: an in-process relay that follows the event store and fans envelopes out
to subscribers, each on its own thread. Same contract as the RabbitMQ path: a delivery says how far
the store has got, and consumers read the events themselves from the store."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from ..store.event_store import EventStore
from .consumer import HEARTBEAT_SECONDS, Delivery, TrackedConsumer

log = logging.getLogger(__name__)

Subscriber = Callable[[Sequence[Delivery]], None]


class InProcessBus:
    """Follows the store from the position at start-up and publishes to subscribers in order."""

    def __init__(self, store: EventStore, *, page: int = 1000) -> None:
        self._store = store
        self._page = page
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._published = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def notify(self, _position: int = 0) -> None:
        """Called after every commit: wake the relay."""
        self._wake.set()

    def start(self) -> None:
        self._published = self._store.max_position()
        self._thread = threading.Thread(target=self._run, name="inprocess-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self._relay()
            except Exception:
                log.exception("in-process relay failed; retrying")
                self._stop.wait(0.5)

    def _relay(self) -> None:
        while not self._stop.is_set():
            batch = self._store.read(self._published, self._page)
            if not batch:
                return
            deliveries = [Delivery(envelope) for envelope in batch]
            with self._lock:
                subscribers = list(self._subscribers)
            for subscriber in subscribers:
                subscriber(deliveries)
            self._published = batch[-1].position


class ConsumerThread:
    """Runs one TrackedConsumer on its own thread, fed by the in-process bus.

    A failure of the consumer itself (the database is away) is logged, backed off and retried
    from the store, so nothing is skipped; handlers report their own failures (a stalled
    projection) where operators look: ``projections status``, health, metrics.
    """

    def __init__(self, consumer: TrackedConsumer) -> None:
        self.consumer = consumer
        self._inbox: queue.SimpleQueue[Sequence[Delivery]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"consumer-{consumer.name}", daemon=True
        )

    def __call__(self, deliveries: Sequence[Delivery]) -> None:
        self._inbox.put(deliveries)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the batch in hand (it commits or rolls back as a whole)."""
        self._stop.set()
        self._inbox.put(())
        self._thread.join(timeout=60)
        if self._thread.is_alive():
            log.error("consumer %s did not stop within 60 s", self.consumer.name)

    def _run(self) -> None:
        backoff = 0.1
        needs_catch_up = True
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self.consumer.heartbeat()
                    last_beat = time.monotonic()
                if needs_catch_up:
                    self.consumer.catch_up()
                    needs_catch_up = False
                    backoff = 0.1
                self._drain()
            except Exception:
                # The database, not a handler (handlers report their own failures): retry.
                log.exception("consumer %s failed; retrying from the store", self.consumer.name)
                self.consumer.reset()
                needs_catch_up = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _drain(self) -> None:
        try:
            first = self._inbox.get(timeout=1.0)
        except queue.Empty:
            return
        deliveries = list(first)
        while True:
            try:
                deliveries.extend(self._inbox.get_nowait())
            except queue.Empty:
                break
        if deliveries:
            self.consumer.deliver(deliveries)
