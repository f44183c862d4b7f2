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
    type = "workflow.published"

    version: int


class WorkflowPublishFailed(WorkflowEvent):
    type = "workflow.publish_failed"

    version: int
    reason: str


class WorkflowArchived(WorkflowEvent):
    type = "workflow.archived"


class WorkflowDegraded(WorkflowEvent):
    """An agent the published version uses was retired."""

    type = "workflow.degraded"

    version: int
    agent_id: UUID
