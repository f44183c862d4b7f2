"""Waiting until handlers have applied a position (GraphQL's ``consistentWith``).

An asynchronous wait holds no thread while it waits: each look at the positions is one short
query in a worker thread, and between looks it sleeps on the event loop, woken early by this
process's own consumers (``Progress``, in embedded mode) or polling with a growing interval (in
distributed mode, where the consumers run in other processes). A position held back by a parked
event is answered at once: no amount of waiting would reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import anyio.to_thread

from ..domain.errors import Unavailable
from . import parking
from .parking import ParkedEvent
from .tracking import TrackingStore

FIRST_LOOK = 0.002  # seconds before the second look; doubled up to LONGEST_LOOK
LONGEST_LOOK = 0.1


class Progress:
    """Positions this process's consumers have committed; wakes whoever waits for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def advanced(self, _name: str, _position: int) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closing
                loop.call_soon_threadsafe(event.set)

    @contextlib.contextmanager
    def watching(self) -> Iterator[asyncio.Event]:
        """An event set at the next progress (register before looking, so none is missed)."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            yield waiter[1]
        finally:
            with self._lock:
                self._waiters.discard(waiter)


class Waiter:
    def __init__(self, tracking: TrackingStore, progress: Progress | None) -> None:
        self.tracking = tracking
        self.progress = progress

    def reached(
        self,
        position: int,
        names: Sequence[str],
        key: str | None = None,
        *,
        check_parked: bool = True,
    ) -> bool:
        """Whether every handler named has applied ``position``; Unavailable if one of them
        has parked an event at or before it (of ``key``, if given)."""
        with self.tracking.transaction(commit=False) as tx:
            # Positions first: a handler parks and moves past an event in one commit, so a
            # position read before the parked rows can only be behind them, never ahead.
            positions = self.tracking.positions(tx, names, lock=False)
            held = parking.holding_back(tx, names, position, key) if check_parked else []
        if held:
            raise held_back(position, held)
        return all(p >= position for p in positions.values())

    async def wait(
        self,
        position: int,
        names: Sequence[str],
        within: float,
        key: str | None = None,
        *,
        check_parked: bool = True,
    ) -> None:
        def look() -> bool:
            return self.reached(position, names, key, check_parked=check_parked)

        if not await _until(look, within, self.progress):
            raise not_reached(position, within)

    def wait_blocking(
        self, position: int, names: Sequence[str], timeout: float, key: str | None = None
    ) -> None:
        """The same, holding the calling thread (CLI, tests)."""
        deadline = time.monotonic() + timeout
        delay = FIRST_LOOK
        while not self.reached(position, names, key):
            if time.monotonic() >= deadline:
                raise not_reached(position, timeout)
            time.sleep(delay)
            delay = min(delay * 2, LONGEST_LOOK)


async def _until(look: Callable[[], bool], within: float, progress: Progress | None) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = FIRST_LOOK
    while True:
        with progress.watching() if progress else contextlib.nullcontext() as woken:
            if await anyio.to_thread.run_sync(look):
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            pause = min(delay, remaining)
            if woken is None:
                await asyncio.sleep(pause)
            else:  # woken by our own consumers; the timeout covers the others
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), max(pause, 0.25))
        delay = min(delay * 2, LONGEST_LOOK)


def not_reached(position: int, timeout: float) -> Unavailable:
    return Unavailable(
        f"the read models have not reached position {position} within {timeout:g}s",
        details={"position": position},
    )


def held_back(position: int, held: Sequence[ParkedEvent]) -> Unavailable:
    first = held[0]
    return Unavailable(
        f"the read model {first.handler!r} cannot reach position {position}: it has parked"
        f" the events of {first.key} from position {first.position} ({first.type}), which an"
        " operator must retry or skip (lightning consumers parked)",
        details={
            "position": position,
            "parked": [
                {"handler": p.handler, "key": p.key, "position": p.position, "type": p.type}
                for p in held
            ],
        },
    )
