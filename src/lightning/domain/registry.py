"""Wire type -> event class, the single place that maps stored facts back to domain events."""

from __future__ import annotations

from . import agent_names, agents, api_keys
from .messages import DomainEvent

EVENT_CLASSES: dict[str, type[DomainEvent]] = {
    cls.type: cls
    for cls in (
        agents.AgentRegistered,
        agents.AgentReconfigured,
        agents.AgentRetired,
        agent_names.AgentNameReserved,
        agent_names.AgentNameReleased,
        api_keys.ApiKeyIssued,
        api_keys.ApiKeyRotated,
        api_keys.ApiKeyPreviousSecretRetired,
        api_keys.ApiKeyExpired,
        api_keys.ApiKeyRevoked,
    )
}


def event_from(type_: str, data: dict[str, object]) -> DomainEvent | None:
    """The domain event for a stored fact, or None for a type this code does not know."""
    cls = EVENT_CLASSES.get(type_)
    return None if cls is None else cls.model_validate(data)
