"""decide(command, state) -> events and evolve(state, event) -> state for a workflow."""

from __future__ import annotations

from uuid import UUID

from ..errors import Conflict, NotFound
from ..messages import DomainEvent
from .commands import (
    ArchiveWorkflow,
    CompletePublish,
    CreateWorkflow,
    DegradeWorkflow,
    FailPublish,
    RestoreWorkflowVersion,
    UpdateWorkflowDraft,
    WorkflowCommand,
)
from .events import (
    WorkflowArchived,
    WorkflowCreated,
    WorkflowDegraded,
    WorkflowDraftUpdated,
    WorkflowEvent,
    WorkflowPublished,
    WorkflowPublishFailed,
    WorkflowPublishRequested,
)
from .graph import Graph, check_graph
from .state import Version, Workflow


def decide(command: WorkflowCommand, state: Workflow | None) -> list[WorkflowEvent]:
    if isinstance(command, CreateWorkflow):
        return _create(command, state)
    if state is None:
        raise NotFound(f"workflow {command.workflow_id} does not exist")
    if isinstance(command, ArchiveWorkflow | CompletePublish | FailPublish | DegradeWorkflow):
        return _settle(command, state)
    if state.status == "ARCHIVED":
        raise Conflict(f"workflow {state.id} is archived and takes no command")
    if isinstance(command, UpdateWorkflowDraft):
        return _update(state, command.graph)
    if isinstance(command, RestoreWorkflowVersion):
        return _restore(command, state)
    return _request_publish(state)


def _create(command: CreateWorkflow, state: Workflow | None) -> list[WorkflowEvent]:
    check_graph(command.graph)
    if state is not None:
        if (state.name, state.draft) == (command.name, command.graph) and state.version == 1:
            return []  # the same creation again: already satisfied
        raise Conflict(f"workflow {command.workflow_id} already exists")
    return [WorkflowCreated(name=command.name, graph=command.graph)]


def _update(state: Workflow, graph: Graph, restored_from: int | None = None) -> list[WorkflowEvent]:
    check_graph(graph)
    if graph == state.draft:
        return []
    return [
        WorkflowDraftUpdated(
            graph=graph, draft_version=state.draft_version + 1, restored_from=restored_from
        )
    ]


def _restore(command: RestoreWorkflowVersion, state: Workflow) -> list[WorkflowEvent]:
    old = state.find(command.version)
    if old is None or old.status != "PUBLISHED":
        raise NotFound(f"workflow {state.id} has no published version {command.version}")
    return _update(state, old.graph, restored_from=command.version)


def _request_publish(state: Workflow) -> list[WorkflowEvent]:
    pending = state.pending
    if pending is not None:
        if pending.version == state.draft_version:
            return []  # this very request is already pending
        raise Conflict(
            f"workflow {state.id} is already publishing version {pending.version}; one"
            " publication at a time"
        )
    if state.find(state.draft_version) is not None:
        raise Conflict(
            f"version {state.draft_version} of workflow {state.id} was already requested;"
            " change the draft to publish again"
        )
    agents = check_graph(state.draft)
    return [WorkflowPublishRequested(version=state.draft_version, graph=state.draft, agents=agents)]


def _settle(
    command: ArchiveWorkflow | CompletePublish | FailPublish | DegradeWorkflow, state: Workflow
) -> list[WorkflowEvent]:
    """What the sagas and archiving decide: each is already satisfied when repeated."""
    if isinstance(command, ArchiveWorkflow):
        if state.status == "ARCHIVED":
            return []
        if state.pending is not None:
            raise Conflict(f"workflow {state.id} is publishing; archive it when that ends")
        published = state.published
        if published is None:
            return [WorkflowArchived()]
        return [WorkflowArchived(version=published.version, agents=published.agents)]
    if isinstance(command, DegradeWorkflow):
        return _degrade(command, state)
    pending = state.pending
    if pending is None or pending.version != command.version:
        return []  # settled already (a redelivered saga step)
    if isinstance(command, FailPublish):
        return [WorkflowPublishFailed(version=command.version, reason=command.reason)]
    if pending.degraded_by:
        raise Conflict(
            f"agent {pending.degraded_by[0]} was retired while version {pending.version} of"
            f" workflow {state.id} was being published",
            details={"agent": str(pending.degraded_by[0])},
        )
    superseded = state.published
    if superseded is None:
        return [WorkflowPublished(version=command.version)]
    return [
        WorkflowPublished(
            version=command.version,
            superseded_version=superseded.version,
            superseded_agents=superseded.agents,
        )
    ]


def _degrade(command: DegradeWorkflow, state: Workflow) -> list[WorkflowEvent]:
    """The published version, or the one being published, uses a retired agent."""
    live = [v for v in (state.published, state.pending) if v is not None]
    if command.version is not None:
        live = [v for v in live if v.version == command.version]
    return [
        WorkflowDegraded(version=version.version, agent_id=command.agent_id)
        for version in live
        if command.agent_id in version.agents
        and command.agent_id not in version.degraded_by
        and state.status != "ARCHIVED"
    ]


# ---- evolution --------------------------------------------------------------------------------


def evolve(state: Workflow | None, event: DomainEvent, aggregate_id: UUID) -> Workflow | None:
    """Fold one fact into the state. Never raises: unknown events leave the state unchanged."""
    if isinstance(event, WorkflowCreated):
        return Workflow(
            id=aggregate_id,
            name=event.name,
            draft=event.graph,
            draft_version=event.draft_version,
            version=1,
        )
    if state is None:
        return None
    update: dict[str, object] = {"version": state.version + 1}
    if isinstance(event, WorkflowDraftUpdated):
        update |= {"draft": event.graph, "draft_version": event.draft_version}
    elif isinstance(event, WorkflowPublishRequested):
        requested = Version(
            version=event.version, status="PUBLISHING", graph=event.graph, agents=event.agents
        )
        update |= {"versions": (*state.versions, requested), "status": "PUBLISHING"}
    elif isinstance(event, WorkflowPublished | WorkflowPublishFailed):
        update |= _settled(state, event)
    elif isinstance(event, WorkflowArchived):
        update |= {"status": "ARCHIVED"}
    elif isinstance(event, WorkflowDegraded):
        update |= {
            "versions": tuple(
                v.model_copy(update={"degraded_by": (*v.degraded_by, event.agent_id)})
                if v.version == event.version
                else v
                for v in state.versions
            )
        }
    return state.model_copy(update=update)


def _settled(
    state: Workflow, event: WorkflowPublished | WorkflowPublishFailed
) -> dict[str, object]:
    ok = isinstance(event, WorkflowPublished)
    reason = event.reason if isinstance(event, WorkflowPublishFailed) else None
    versions = tuple(
        v.model_copy(
            update={"status": "PUBLISHED" if ok else "PUBLISH_FAILED", "failure_reason": reason}
        )
        if v.version == event.version
        else v
        for v in state.versions
    )
    # A failed publication of a newer version leaves the published one live: still PUBLISHED
    # (the failed version and its reason are in ``versions``).
    live = ok or state.published_version is not None
    update: dict[str, object] = {
        "versions": versions,
        "status": "PUBLISHED" if live else "PUBLISH_FAILED",
    }
    if ok:
        update |= {"published_version": event.version}
    return update
