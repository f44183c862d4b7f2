"""Consumer bookkeeping: an operator's decision to skip parked events, as a fact in the log.

One stream per consumer kind (id derived from its name). Skipping is idempotent: an event already
recorded as skipped for a handler is not recorded again, so a retried ``skip-parked`` (after a
crash between recording and unparking) adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict

from .messages import Command, DomainEvent

_NAMESPACE = UUID("0b8f3c5e-7d0a-4f8e-9c55-3c1d2e6a7b90")
REASON_MAX = 500


def stream_id(consumer: str) -> UUID:
    return uuid5(_NAMESPACE, consumer)


class EventSkipped(DomainEvent):
    type = "consumer.event_skipped"
    aggregate_type = "consumer"

    consumer: str
    handler: str
    aggregate: str  # the parked key: an aggregate for a projection, an instance for a saga
    position: int
    reason: str = ""


class SkippedEvent(BaseModel):
    """One parked event an operator chose to skip."""

    model_config = ConfigDict(frozen=True)

    handler: str
    aggregate: str
    position: int


class SkipParked(Command):
    consumer: str
    events: tuple[SkippedEvent, ...]
    reason: str = ""


class SkipLog(BaseModel):
    model_config = ConfigDict(frozen=True)

    skipped: frozenset[tuple[str, int]] = frozenset()  # (handler, position)
    version: int = 0


def decide(command: SkipParked, state: SkipLog) -> list[EventSkipped]:
    return [
        EventSkipped(
            consumer=command.consumer,
            handler=e.handler,
            aggregate=e.aggregate,
            position=e.position,
            reason=command.reason[:REASON_MAX],
        )
        for e in _unrecorded(command.events, state)
    ]


def _unrecorded(events: Sequence[SkippedEvent], state: SkipLog) -> list[SkippedEvent]:
    seen = set(state.skipped)
    fresh = []
    for event in events:
        if (event.handler, event.position) not in seen:
            seen.add((event.handler, event.position))
            fresh.append(event)
    return fresh


def evolve(state: SkipLog, event: DomainEvent) -> SkipLog:
    version = state.version + 1
    if isinstance(event, EventSkipped):
        return SkipLog(skipped=state.skipped | {(event.handler, event.position)}, version=version)
    return state.model_copy(update={"version": version})
