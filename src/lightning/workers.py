"""``lightning worker``: the distributed workers — the outbox relay and one queue consumer per
consumer kind — in one asyncio process, each stoppable with SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Sequence

from .bootstrap import Lightning
from .bus.relay import Relay
from .consumers.amqp import QueueConsumer
from .domain.errors import ValidationFailed

log = logging.getLogger(__name__)

RELAY = "relay"
ALL = "all"


def worker_names(app: Lightning) -> list[str]:
    """What ``lightning worker`` accepts: the relay, each consumer kind, or all of them."""
    return [RELAY, *app.consumers.kinds, ALL]


def chosen(app: Lightning, names: Sequence[str]) -> list[str]:
    known = worker_names(app)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationFailed(
            f"no worker {unknown[0]!r}; choose among {', '.join(known)}",
            details={"worker": unknown[0]},
        )
    if ALL in names:
        return known[:-1]
    return list(dict.fromkeys(names))


def tasks_for(app: Lightning, name: str, stop: asyncio.Event) -> Awaitable[None]:
    if name == RELAY:
        return Relay(app.settings, app.store).run(stop)
    # One queue per consumer kind; the consumer reports each handler's status itself.
    consumer = QueueConsumer(app.settings, app.consumers.build(name)).run(stop)
    return _with_companions(app, name, consumer)


async def _with_companions(app: Lightning, name: str, consumer: Awaitable[None]) -> None:
    """What runs beside a kind's consumer (``Lightning.start_beside``), on threads of their
    own: the timer scheduler beside the sagas — every such worker runs one (a standby too:
    firing is exactly once however many race, and a standby's scheduler keeps firing while the
    active consumer is down) —, the sender beside the webhook dispatcher (every one too:
    deliveries are leased before they are sent)."""
    stops = app.start_beside(name)
    try:
        await consumer
    finally:
        for stopped in stops:
            stopped.set()


async def run_workers(app: Lightning, names: Sequence[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(tasks_for(app, name, stop)) for name in names]
    log.info("running %d worker task(s): %s", len(tasks), ", ".join(names))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
