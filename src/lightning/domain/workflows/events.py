"""What happens to a workflow (wire types ``workflow.*``)."""

from __future__ import annotations

from uuid import UUID

from ..messages import DomainEvent
from .graph import Graph


class WorkflowEvent(DomainEvent):
    aggregate_type = "workflow"


class WorkflowCreated(WorkflowEvent):
    type = "workflow.created"

    name: str
    graph: Graph
    draft_version: int = 1


class WorkflowDraftUpdated(WorkflowEvent):
    type = "workflow.draft_updated"

    graph: Graph
    draft_version: int
    restored_from: int | None = None


class WorkflowPublishRequested(WorkflowEvent):
    """The draft as version ``version``, and the agents it uses in graph order: all the
    publish saga needs."""

    type = "workflow.publish_requested"

    version: int
    graph: Graph
    agents: tuple[UUID, ...]


class WorkflowPublished(WorkflowEvent):
    """``version`` is the published one now; ``superseded_version`` the one it replaces, whose
    agents (``superseded_agents``) the publish saga then detaches."""

    type = "workflow.published"

    version: int
    superseded_version: int | None = None
    superseded_agents: tuple[UUID, ...] = ()


class WorkflowPublishFailed(WorkflowEvent):
    type = "workflow.publish_failed"

    version: int
    reason: str


class WorkflowArchived(WorkflowEvent):
    """``version``: the published version it had (if any), whose ``agents`` are released."""

    type = "workflow.archived"

    version: int | None = None
    agents: tuple[UUID, ...] = ()


class WorkflowDegraded(WorkflowEvent):
    """An agent that ``version`` uses was retired: the published version, or the one being
    published (whose publication then fails)."""

    type = "workflow.degraded"

    version: int
    agent_id: UUID
