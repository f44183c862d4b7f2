"""The consumer kinds a deployment runs, as one object for the composition root to build and for
the edges (CLI, GraphQL, health, metrics, workers) to use. It is given the kinds; it knows none.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from ..domain.errors import NotFound, ValidationFailed
from ..store.event_store import EventStore
from . import operations, parking
from .consumer import Consumer, RetryPolicy
from .handler import ConsumerKind, Handler
from .operations import RetryResult
from .parking import ParkedEvent, ParkedFilter
from .rebuild import BATCH, Rebuilt, rebuild
from .status import HandlerStatus, statuses
from .tracking import TrackingStore
from .waiting import Progress, Waiter

KEY_MAX = 200
NAME_SHOWN = 100  # characters of an unknown name repeated in an error


class Consumers:
    def __init__(
        self,
        kinds: Sequence[ConsumerKind],
        tracking: TrackingStore,
        events: EventStore,
        *,
        policy: RetryPolicy | None = None,
        progress: Progress | None = None,
        batch_size: int = 500,
    ) -> None:
        self.kinds = {kind.name: kind for kind in kinds}
        self.tracking = tracking
        self.events = events
        self.policy = policy or RetryPolicy()
        self.progress = progress
        self.batch_size = batch_size
        self.waiter = Waiter(tracking, progress)
        self._listeners: list[Callable[[str, int], None]] = []
        names = [name for kind in kinds for name in kind.handler_names()]
        if len(names) != len(set(names)):
            raise ValueError(f"handler names must be unique across consumer kinds: {names}")

    # ---- kinds and handlers --------------------------------------------------------------------

    def kind(self, name: str) -> ConsumerKind:
        if name not in self.kinds:
            raise NotFound(
                f"no consumer {name[:NAME_SHOWN]!r}; choose one of {', '.join(self.kinds)}",
                details={"consumer": name[:NAME_SHOWN]},
            )
        return self.kinds[name]

    def handler(self, name: str) -> tuple[ConsumerKind, Handler]:
        for kind in self.kinds.values():
            for handler in kind.handlers():
                if handler.name == name:
                    return kind, handler
        raise NotFound(
            f"no handler {name[:NAME_SHOWN]!r}; choose one of {', '.join(self.handler_names())}",
            details={"handler": name[:NAME_SHOWN]},
        )

    def handler_names(self, kind: str | None = None) -> list[str]:
        kinds = [self.kind(kind)] if kind is not None else list(self.kinds.values())
        return [name for k in kinds for name in k.handler_names()]

    def build(self, kind: str, handlers: Sequence[Handler] | None = None) -> Consumer:
        """A consumer of ``kind`` (with all its handlers, or just those given)."""
        chosen = self.kind(kind)
        return Consumer(
            chosen.name,
            chosen.handlers() if handlers is None else handlers,
            self.tracking,
            self.events,
            policy=self.policy,
            batch_size=min(chosen.batch_size or self.batch_size, self.batch_size),
            on_progress=self._advanced,
        )

    def on_progress(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener(handler, position)`` after any consumer built here commits."""
        self._listeners.append(listener)

    def _advanced(self, handler: str, position: int) -> None:
        if self.progress is not None:
            self.progress.advanced(handler, position)
        for listener in self._listeners:
            listener(handler, position)

    # ---- what operators look at ----------------------------------------------------------------

    def statuses(self, kind: str | None = None) -> list[HandlerStatus]:
        kinds = [self.kind(kind)] if kind is not None else list(self.kinds.values())
        return statuses(kinds, self.tracking, self.events)

    def check(self, which: ParkedFilter) -> ParkedFilter:
        """Refuse names that do not exist and keys no handler could have."""
        if which.consumer is not None:
            self.kind(which.consumer)
        if which.handler is not None:
            self.handler(which.handler)
        key = which.key
        if key is not None and (
            not 0 < len(key) <= KEY_MAX or any(unicodedata.category(c)[0] == "C" for c in key)
        ):
            raise ValidationFailed(
                f"a key has 1 to {KEY_MAX} characters, none of them control characters",
                details={"key": key[:NAME_SHOWN].encode("unicode_escape").decode()},
            )
        return which

    def parked(
        self, which: ParkedFilter, limit: int = 1_000, after: parking.Place | None = None
    ) -> list[ParkedEvent]:
        with self.tracking.transaction(commit=False) as tx:
            return parking.listed(tx, self.check(which), limit, after)

    def parked_counts(self, which: ParkedFilter) -> dict[tuple[str, str, str], int]:
        with self.tracking.transaction(commit=False) as tx:
            return parking.counted(tx, self.check(which))

    # ---- what operators do ---------------------------------------------------------------------

    def retry_parked(self, which: ParkedFilter, *, dry_run: bool = False) -> list[RetryResult]:
        with self.tracking.transaction(commit=False) as tx:
            groups = parking.groups(tx, self.check(which))
        results = []
        for consumer, handler_name, key in groups:
            _, handler = self.handler(handler_name)
            results.append(
                operations.retry_group(
                    self.tracking, self.events, consumer, handler, key, dry_run=dry_run
                )
            )
        return results

    def skip_parked(
        self, which: ParkedFilter, record: Callable[[str, Sequence[ParkedEvent]], object]
    ) -> list[ParkedEvent]:
        return operations.skip(self.tracking, self.check(which), record)

    def rebuild(
        self,
        kind: str,
        handlers: Sequence[Handler],
        tables: Sequence[str],
        *,
        batch_size: int = BATCH,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> Rebuilt:
        """Empty what ``handlers`` of ``kind`` hold (their ``tables``), forget what they parked
        and apply the whole log to them again, in one pass for all (see ``rebuild``)."""
        chosen = self.kind(kind)
        return rebuild(
            self.tracking,
            self.events,
            chosen.name,
            handlers,
            tables,
            policy=self.policy,
            batch_size=batch_size,
            on_commit=self._advanced,
            on_progress=on_progress,
        )

    def reset(self, kind: str, handler: str, tables: Sequence[str]) -> None:
        """Forget everything one handler applied and parked (before a rebuild)."""
        with self.tracking.transaction(commit=True) as tx:
            self.tracking.reset(tx, handler, tables)
            parking.clear(tx, kind, handler)

    # ---- waiting -------------------------------------------------------------------------------

    async def wait(
        self,
        position: int,
        names: Sequence[str],
        within: float,
        *,
        key: str | None = None,
        check_parked: bool = True,
    ) -> None:
        """Until the handlers named have applied ``position`` (Unavailable after ``within``
        seconds, or at once if they parked an event at or before it, unless ``check_parked``
        is False: for readers of the handlers' status rather than of their read models)."""
        await self.waiter.wait(position, names, within, key, check_parked=check_parked)

    def wait_blocking(
        self, position: int, names: Sequence[str] | None = None, timeout: float = 5.0
    ) -> None:
        self.waiter.wait_blocking(position, names or self.handler_names(), timeout)
