"""Wire type -> event class, the single place that maps stored facts back to domain events
(through the upcasters of ``upcasting``, checked against these classes here, at import)."""

from __future__ import annotations

from . import agent_names, agents, api_keys, consumers, timers, webhooks, workflows
from .messages import DomainEvent
from .upcasting import UPCASTERS, upcast

EVENT_CLASSES: dict[str, type[DomainEvent]] = {
    cls.type: cls
    for cls in (
        agents.AgentRegistered,
        agents.AgentReconfigured,
        agents.AgentRetired,
        agents.AgentWorkflowAttached,
        agents.AgentWorkflowDetached,
        agent_names.AgentNameReserved,
        agent_names.AgentNameReleased,
        api_keys.ApiKeyIssued,
        api_keys.ApiKeyRotated,
        api_keys.ApiKeyPreviousSecretRetired,
        api_keys.ApiKeyExpired,
        api_keys.ApiKeyRevoked,
        api_keys.ApiKeyRotationDue,
        consumers.EventSkipped,
        timers.TimerScheduled,
        timers.TimerFired,
        timers.TimerCancelled,
        workflows.WorkflowCreated,
        workflows.WorkflowDraftUpdated,
        workflows.WorkflowPublishRequested,
        workflows.WorkflowPublished,
        workflows.WorkflowPublishFailed,
        workflows.WorkflowArchived,
        workflows.WorkflowDegraded,
        webhooks.WebhookSubscribed,
        webhooks.WebhookUpdated,
        webhooks.WebhookSecretRotated,
        webhooks.WebhookPaused,
        webhooks.WebhookResumed,
        webhooks.WebhookDisabled,
        webhooks.WebhookEnabled,
        webhooks.WebhookDeleted,
    )
}


# Every class's schema_version reached by contiguous upcasters: a gap fails here, in every test.
UPCASTERS.check(EVENT_CLASSES.values())


def event_from(
    type_: str, data: dict[str, object], schema_version: int | None = None
) -> DomainEvent | None:
    """The domain event for a stored fact, or None for a type this code does not know.
    ``data`` is upcast from ``schema_version`` first; None means it is in the current shape
    already (an ``Envelope``'s is: it upcasts when it is read)."""
    cls = EVENT_CLASSES.get(type_)
    if cls is None:
        return None
    if schema_version is not None:
        _, data = upcast(type_, schema_version, data)
    # Read tolerantly: a field written by a newer version is ignored, not a crash.
    return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})
