"""What operators do about a saga instance (``lightning sagas retry|abort``).

* **retry**: apply its parked events again (the consumer mechanism's retry, for this saga's
  handler and this instance's key), after a fix; ``--dry-run`` first.
* **abort**: stop the instance and undo what it did, on an operator's explicit word: its parked
  events are skipped (recorded as ``consumer.event_skipped``, as ``consumers skip-parked``
  does), then the saga's own abort commands are sent as the operator — for a publication, fail
  it and detach its version from every agent it uses; for a key, cancel its timers. The saga
  sees the resulting events like any others and ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4, uuid5

from ..consumers import Consumers, ParkedEvent, ParkedFilter, RetryResult
from ..domain.catalogue import Catalogue
from ..domain.errors import Conflict, NotFound
from ..services.common import Context
from ..store.event_store import EventStore
from . import instances
from .base import Saga
from .commands import Dispatcher


@dataclass(frozen=True)
class Aborted:
    saga: str
    instance: str
    skipped: list[ParkedEvent]
    sent: list[str]  # the steps of the commands sent


def retry(
    consumers: Consumers, saga: Saga[Any], key: str, *, dry_run: bool = False
) -> list[RetryResult]:
    return consumers.retry_parked(ParkedFilter(instances.KIND, saga.name, key), dry_run=dry_run)


def abort(
    consumers: Consumers,
    store: EventStore,
    catalogue: Catalogue,
    saga: Saga[Any],
    key: str,
    ctx: Context,
    record: Callable[[str, Sequence[ParkedEvent]], object],
) -> Aborted:
    ctx.principal.require("administer")
    skipped = consumers.skip_parked(ParkedFilter(instances.KIND, saga.name, key), record)
    with store.backend.transaction(commit=False) as tx:
        current = instances.load(tx, saga, [key]).get(key)
    dispatcher = Dispatcher(store, catalogue)
    commands = saga.abort(current, key, dispatcher.workflows)
    if not commands and not skipped:
        if current is None:
            raise NotFound(f"no {saga.name} saga {key[:100]!r}", details={"id": key[:100]})
        raise Conflict(f"the {saga.name} saga {key} has nothing left to abort ({current.status})")
    abort = uuid4()  # this abort: each of its commands gets an id of its own from it
    for command in commands:
        one = Context(
            ctx.principal,
            correlation_id=ctx.correlation_id,
            command_id=uuid5(abort, command.step),
            now=ctx.now,
        )
        dispatcher.send(one, saga.name, key, command)
    return Aborted(saga.name, key, skipped, [c.step for c in commands])
