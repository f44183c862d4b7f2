"""Runs a Consumer on its own thread, fed by the in-process bus (the embedded default).

It catches up from the store at start, then applies whatever the bus delivers (everything
waiting, in one go), retries a failing handler's event when it is due, and reports a heartbeat.
A failure of the consumer itself (the database is away) is retried with a short backoff from
the store, so nothing is skipped and it resumes within a second of the database's return.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from ..bus.delivery import Delivery
from ..store.outages import Backoff, is_retryable
from .consumer import HEARTBEAT_SECONDS, Consumer

log = logging.getLogger(__name__)

IDLE_WAIT = 1.0  # seconds between looks at the clock when nothing arrives


class ConsumerThread:
    def __init__(self, consumer: Consumer) -> None:
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
        backoff = Backoff()
        needs_catch_up = True
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_beat > HEARTBEAT_SECONDS:
                    self.consumer.heartbeat()
                    last_beat = time.monotonic()
                if needs_catch_up or self._retry_due():
                    self.consumer.catch_up()
                    needs_catch_up = False
                self._drain()
                backoff.reset()
            except Exception as exc:
                if is_retryable(exc):
                    log.warning("consumer %s: database unavailable (%s); retrying", self.name, exc)
                else:
                    log.exception("consumer %s failed; retrying from the store", self.name)
                self.consumer.reset()
                needs_catch_up = True
                self._stop.wait(backoff.next())

    @property
    def name(self) -> str:
        return self.consumer.name

    def _retry_due(self) -> bool:
        due = self.consumer.next_retry()
        return due is not None and due <= time.monotonic()

    def _wait(self) -> float:
        due = self.consumer.next_retry()
        if due is None:
            return IDLE_WAIT
        return max(0.0, min(IDLE_WAIT, due - time.monotonic()))

    def _drain(self) -> None:
        try:
            first = self._inbox.get(timeout=self._wait())
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
