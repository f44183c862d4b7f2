"""Replay: rebuild any aggregate's state from its events, up to a version or a point in time.
Used by ``lightning replay`` and GraphQL ``stateAt``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import BaseModel

from .domain import agent_names, agents, api_keys, consumers, timers, workflows
from .domain.errors import NotFound, ValidationFailed
from .domain.messages import UNKNOWN, DomainEvent
from .store.envelope import REDACTED_FIELDS

if TYPE_CHECKING:
    from .bootstrap import Lightning

Evolve = Callable[[Any, DomainEvent], Any]

# Fields never shown, even to an admin replaying history.
_REDACTED = set(REDACTED_FIELDS)


def _folds(aggregate_id: UUID) -> dict[str, tuple[Evolve, Any]]:
    return {
        "agent": (lambda s, e: agents.evolve(s, e, aggregate_id), None),
        "api_key": (lambda s, e: api_keys.evolve(s, e, aggregate_id), None),
        "agent_name": (agent_names.evolve, agent_names.NameReservation()),
        "consumer": (consumers.evolve, consumers.SkipLog()),
        "workflow": (lambda s, e: workflows.evolve(s, e, aggregate_id), None),
        "timer": (lambda s, e: timers.evolve(s, e, aggregate_id), None),
    }


@dataclass(frozen=True)
class Replayed:
    aggregate_id: UUID
    aggregate_type: str
    version: int
    position: int
    occurred_at: datetime
    state: dict[str, Any]


def replay(
    app: Lightning,
    aggregate_id: UUID,
    to_version: int | None = None,
    as_of: datetime | None = None,
) -> Replayed:
    if to_version is not None and to_version < 1:
        raise ValidationFailed("version must be at least 1", details={"version": to_version})
    envelopes = app.store.load(aggregate_id, to_version=to_version)
    if not envelopes:
        raise NotFound(f"no events for aggregate {aggregate_id}")
    if as_of is not None:
        envelopes = [e for e in envelopes if e.occurred_at <= as_of]
        if not envelopes:
            raise NotFound(f"aggregate {aggregate_id} did not exist at {as_of.isoformat()}")
    aggregate_type = envelopes[0].aggregate_type
    evolve, state = _folds(aggregate_id).get(aggregate_type, (lambda s, e: s, None))
    for envelope in envelopes:
        state = evolve(state, envelope.domain_event() or UNKNOWN)
    shown = state.model_dump(mode="json", exclude=_REDACTED) if isinstance(state, BaseModel) else {}
    last = envelopes[-1]
    return Replayed(
        aggregate_id, aggregate_type, last.version, last.position, last.occurred_at, shown
    )
