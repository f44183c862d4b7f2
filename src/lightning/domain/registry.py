"""Wire type -> event class, the single place that maps stored facts back to domain events."""

from __future__ import annotations

from . import agent_names, agents, api_keys, consumers
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
        consumers.EventSkipped,
    )
}


def event_from(type_: str, data: dict[str, object]) -> DomainEvent | None:
    """The domain event for a stored fact, or None for a type this code does not know."""
    cls = EVENT_CLASSES.get(type_)
    if cls is None:
        return None
    # Read tolerantly: a field written by a newer version is ignored, not a crash.
    return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
