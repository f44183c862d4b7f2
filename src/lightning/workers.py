"""``lightning worker``: the distributed workers (outbox relay, projection builders) in one
asyncio process, each stoppable with SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Sequence
from enum import StrEnum

from .bootstrap import Lightning
from .bus.amqp_consumer import QueueConsumer
from .bus.consumer import TrackedConsumer
from .bus.relay import Relay

log = logging.getLogger(__name__)


class WorkerKind(StrEnum):
    relay = "relay"
    projections = "projections"
    all = "all"


def tasks_for(app: Lightning, kind: WorkerKind, stop: asyncio.Event) -> list[Awaitable[None]]:
    tasks: list[Awaitable[None]] = []
    if kind in (WorkerKind.relay, WorkerKind.all):
        tasks.append(Relay(app.settings, app.store).run(stop))
    if kind in (WorkerKind.projections, WorkerKind.all):
        # One queue for all read models; the group reports each projection's status itself.
        consumer = TrackedConsumer(app.projections.group(), app.store)
        tasks.append(QueueConsumer(app.settings, consumer).run(stop))
    return tasks


async def run_workers(app: Lightning, kinds: Sequence[WorkerKind]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(t) for kind in kinds for t in tasks_for(app, kind, stop)]
    log.info("running %d worker task(s): %s", len(tasks), ", ".join(k.value for k in kinds))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
