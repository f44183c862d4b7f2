"""What happens to an agent (wire types ``agent.*``)."""

from __future__ import annotations

from uuid import UUID

from ..messages import DomainEvent
from .state import AttachedWorkflow


class AgentEvent(DomainEvent):
    aggregate_type = "agent"


class AgentRegistered(AgentEvent):
    type = "agent.registered"

    name: str
    description: str
    provider: str
    model: str
    temperature: float
    max_tokens: int
    system_prompt: str
    tools: tuple[str, ...]


class AgentReconfigured(AgentEvent):
    """Only the fields that changed are set; ``config_version`` is the new version.
    ``restored_from``: the configuration version this one restores (version control)."""

    type = "agent.reconfigured"

    config_version: int
    name: str | None = None
    description: str | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    tools: tuple[str, ...] | None = None
    restored_from: int | None = None


class AgentRetired(AgentEvent):
    """``workflows``: the workflow versions attached when it was retired (each is degraded)."""

    type = "agent.retired"

    name: str
    workflows: tuple[AttachedWorkflow, ...] = ()


class AgentWorkflowAttached(AgentEvent):
    """A workflow version uses this agent (the publish saga attaches it before publishing)."""

    type = "agent.workflow_attached"

    workflow_id: UUID
    version: int


class AgentWorkflowDetached(AgentEvent):
    """That workflow version no longer uses this agent: its publication failed (compensation),
    a newer version replaced it, or the workflow was archived."""

    type = "agent.workflow_detached"

    workflow_id: UUID
    version: int
