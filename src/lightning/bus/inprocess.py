"""The embedded transport: an in-process relay that follows the event store and fans envelopes out
to subscribers (``consumers.inprocess.ConsumerThread``, the live feed). Same contract as the
RabbitMQ path: a delivery says how far the store has got, and consumers read the events
themselves from the store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from ..store.event_store import EventStore
from .delivery import Delivery

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
