"""What may be asked of a workflow; a graph a command brings is checked by ``decide``."""

from __future__ import annotations

from uuid import UUID

from ..limits import Name, Reason
from ..messages import Command
from .graph import Graph


class CreateWorkflow(Command):
    workflow_id: UUID
    name: Name
    graph: Graph


class UpdateWorkflowDraft(Command):
    workflow_id: UUID
    graph: Graph


class RequestPublish(Command):
    workflow_id: UUID


class CompletePublish(Command):
    workflow_id: UUID
    version: int


class FailPublish(Command):
    workflow_id: UUID
    version: int
    reason: Reason


class ArchiveWorkflow(Command):
    workflow_id: UUID


class RestoreWorkflowVersion(Command):
    workflow_id: UUID
    version: int


class DegradeWorkflow(Command):
    """``agent_id`` was retired while attached to ``version`` (None: whichever of the published
    version and the one being published uses it)."""

    workflow_id: UUID
    agent_id: UUID
    version: int | None = None


WorkflowCommand = (
    CreateWorkflow
    | UpdateWorkflowDraft
    | RequestPublish
    | CompletePublish
    | FailPublish
    | ArchiveWorkflow
    | RestoreWorkflowVersion
    | DegradeWorkflow
)
