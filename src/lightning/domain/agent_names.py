"""Agent-name reservations: the event-sourced uniqueness boundary for agent names.

Each normalised name has its own stream (id derived from the name). Registering or renaming an
agent appends a reservation to that stream *in the same transaction* as the agent's own event, so
two concurrent registrations of one name collide on the reservation stream's version and only one
commits. Retiring or renaming releases the name.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict

from .errors import Conflict
from .messages import DomainEvent

_NAMESPACE = UUID("5f0c6f0e-3b1c-4c84-9a55-8f3c1f0b2a61")


def reservation_id(name: str) -> UUID:
    return uuid5(_NAMESPACE, name.casefold())


class AgentNameEvent(DomainEvent):
    aggregate_type = "agent_name"


class AgentNameReserved(AgentNameEvent):
    type = "agent_name.reserved"

    name: str
    agent_id: UUID


class AgentNameReleased(AgentNameEvent):
    type = "agent_name.released"

    name: str
    agent_id: UUID


class NameReservation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    holder: UUID | None = None
    version: int = 0


def reserve(state: NameReservation, name: str, agent_id: UUID) -> list[AgentNameEvent]:
    if state.holder == agent_id:
        return []
    if state.holder is not None:
        raise Conflict(
            f"an active agent named {name!r} already exists",
            details={"name": "taken", "agent_id": str(state.holder)},
        )
    return [AgentNameReserved(name=name, agent_id=agent_id)]


def release(state: NameReservation, name: str, agent_id: UUID) -> list[AgentNameEvent]:
    if state.holder != agent_id:
        return []
    return [AgentNameReleased(name=name, agent_id=agent_id)]


def evolve(state: NameReservation, event: DomainEvent) -> NameReservation:
    version = state.version + 1
    if isinstance(event, AgentNameReserved):
        return NameReservation(holder=event.agent_id, version=version)
    if isinstance(event, AgentNameReleased):
        return NameReservation(holder=None, version=version)
    return state.model_copy(update={"version": version})
