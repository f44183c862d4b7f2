"""How every handler of every consumer kind is doing, as operators see it (CLI, GraphQL, health,
metrics): position, lag, status and what it has parked.

Status, from worse to better:

* ``retrying``: a handler is trying an event again after it failed (error says which);
* ``stale``: no worker has reported for it for ``STALE_AFTER`` seconds (the worker is down);
* ``degraded``: running, with parked events waiting for an operator;
* ``catching_up`` / ``running``: no worker reported yet and behind / otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..store.event_store import EventStore
from . import parking
from .consumer import HEARTBEAT_SECONDS
from .handler import ConsumerKind
from .tracking import TrackingStore

STALE_AFTER = 3 * HEARTBEAT_SECONDS
HEALTHY = frozenset({"running", "catching_up"})


@dataclass(frozen=True)
class HandlerStatus:
    kind: str  # the consumer kind: the queue, the worker command
    name: str  # the handler: a projection, a saga type
    position: int
    lag: int
    status: str
    error: str | None
    parked: int

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY


def statuses(
    kinds: Sequence[ConsumerKind], tracking: TrackingStore, events: EventStore
) -> list[HandlerStatus]:
    head = events.max_position()
    names = [(kind.name, name) for kind in kinds for name in kind.handler_names()]
    rows = tracking.status_rows()
    with tracking.transaction(commit=False) as tx:
        positions = tracking.positions(tx, [name for _, name in names], lock=False)
        parked = parking.counts(tx)
    now = datetime.now(UTC)
    result = []
    for kind, name in names:
        position = positions[name]
        row = rows.get(name, {})
        status = row.get("status") or ("running" if position >= head else "catching_up")
        error = row.get("error")
        if status == "running" and row.get("updated_at"):
            silent = (now - datetime.fromisoformat(row["updated_at"])).total_seconds()
            if silent > STALE_AFTER:
                status, error = "stale", f"no worker has reported for {silent:.0f}s"
        count = parked.get(name, 0)
        if count and status in HEALTHY:
            status = "degraded"
            error = f"{count} parked event(s): see `lightning consumers parked`"
        result.append(
            HandlerStatus(kind, name, position, max(head - position, 0), status, error, count)
        )
    return result
