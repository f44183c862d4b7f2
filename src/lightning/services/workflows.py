"""Workflow command handlers (load → decide → append), export and import, reads from the store.

Operators create, change, publish, restore and archive workflows; the publish saga settles a
publication (``complete_publish`` / ``fail_publish``) and the agent-retirement saga degrades
the workflows a retired agent was in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ..domain import workflows
from ..domain.errors import NotFound, ValidationFailed
from ..domain.messages import DomainEvent
from ..domain.workflows.document import document_of, read_document
from ..store.commands import CommandRecord
from ..store.envelope import Envelope
from ..store.event_store import Events
from .common import Context, Loaded, as_of, load, once, parse, retry_on_conflict, stamp


@dataclass(frozen=True)
class WorkflowResult:
    position: int
    workflow: workflows.Workflow


def _fold(workflow_id: UUID) -> Any:
    def evolve(state: workflows.Workflow | None, event: DomainEvent) -> workflows.Workflow | None:
        return workflows.evolve(state, event, workflow_id)

    return evolve


class WorkflowService:
    def __init__(self, store: Events) -> None:
        self.store = store

    # ---- operators' commands ------------------------------------------------------------------

    def create(self, ctx: Context, *, name: str, graph: object) -> WorkflowResult:
        ctx.principal.require("operate")
        command = parse(
            workflows.CreateWorkflow, workflow_id=ctx.new_id(), name=name, graph=_graph(graph)
        )
        return self._handle(ctx, command)

    def update_draft(self, ctx: Context, workflow_id: UUID, *, graph: object) -> WorkflowResult:
        ctx.principal.require("operate")
        command = parse(workflows.UpdateWorkflowDraft, workflow_id=workflow_id, graph=_graph(graph))
        return self._handle(ctx, command)

    def request_publish(self, ctx: Context, workflow_id: UUID) -> WorkflowResult:
        """Ask for the draft to be published: the publish saga decides."""
        ctx.principal.require("operate")
        return self._handle(ctx, workflows.RequestPublish(workflow_id=workflow_id))

    def archive(self, ctx: Context, workflow_id: UUID) -> WorkflowResult:
        ctx.principal.require("operate")
        return self._handle(ctx, workflows.ArchiveWorkflow(workflow_id=workflow_id))

    def restore_version(self, ctx: Context, workflow_id: UUID, version: int) -> WorkflowResult:
        """A new draft equal to published version ``version``."""
        ctx.principal.require("operate")
        command = parse(workflows.RestoreWorkflowVersion, workflow_id=workflow_id, version=version)
        return self._handle(ctx, command)

    def import_document(self, ctx: Context, document: object) -> WorkflowResult:
        """A new workflow (a draft) from an exported document."""
        ctx.principal.require("operate")
        parsed = read_document(document)
        command = parse(
            workflows.CreateWorkflow,
            workflow_id=ctx.new_id(),
            name=parsed.name,
            graph=parsed.domain_graph,
        )
        return self._handle(ctx, command)

    # ---- the sagas' commands ------------------------------------------------------------------

    def complete_publish(self, ctx: Context, workflow_id: UUID, version: int) -> WorkflowResult:
        ctx.principal.require("operate")
        return self._handle(
            ctx, workflows.CompletePublish(workflow_id=workflow_id, version=version)
        )

    def fail_publish(
        self, ctx: Context, workflow_id: UUID, version: int, reason: str
    ) -> WorkflowResult:
        ctx.principal.require("operate")
        command = parse(
            workflows.FailPublish, workflow_id=workflow_id, version=version, reason=reason[:500]
        )
        return self._handle(ctx, command)

    def degrade(
        self, ctx: Context, workflow_id: UUID, agent_id: UUID, version: int | None = None
    ) -> WorkflowResult:
        ctx.principal.require("operate")
        command = workflows.DegradeWorkflow(
            workflow_id=workflow_id, agent_id=agent_id, version=version
        )
        return self._handle(ctx, command)

    # ---- reads --------------------------------------------------------------------------------

    def get(self, workflow_id: UUID) -> workflows.Workflow:
        state = self._load(workflow_id).state
        if state is None:
            raise NotFound(f"workflow {workflow_id} does not exist")
        return state

    def state_at(
        self, workflow_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> tuple[workflows.Workflow, Envelope]:
        """The workflow as it was after event ``version`` or at time ``as_of``."""
        if version is not None and version < 1:
            raise ValidationFailed("version must be at least 1", details={"version": version})
        envelopes = self.store.load(workflow_id, to_version=version)
        if as_of is not None:
            envelopes = [e for e in envelopes if e.occurred_at <= as_of]
        state = load(self.store, workflow_id, _fold(workflow_id), None, envelopes).state
        if state is None:
            when = f" at {as_of.isoformat()}" if as_of else ""
            raise NotFound(f"workflow {workflow_id} did not exist{when}")
        return state, envelopes[-1]

    def export_document(self, workflow_id: UUID, version: int | None = None) -> dict[str, Any]:
        """The document of the draft, or of requested version ``version``."""
        state = self.get(workflow_id)
        if version is None:
            return document_of(state.name, state.draft)
        found = state.find(version)
        if found is None:
            raise NotFound(
                f"workflow {workflow_id} has no version {version}", details={"version": version}
            )
        return document_of(state.name, found.graph)

    # ---- internals ----------------------------------------------------------------------------

    def _handle(self, ctx: Context, command: workflows.WorkflowCommand) -> WorkflowResult:
        handle: Callable[[], WorkflowResult] = lambda: self._apply(ctx, command)  # noqa: E731
        return once(self.store, ctx, handle, self._first)

    def _first(self, record: CommandRecord) -> WorkflowResult:
        envelopes = as_of(self.store, record)
        state = load(self.store, record.aggregate_id, _fold(record.aggregate_id), None, envelopes)
        assert state.state is not None  # the command created or changed this workflow
        return WorkflowResult(record.position, state.state)

    @retry_on_conflict
    def _apply(self, ctx: Context, command: workflows.WorkflowCommand) -> WorkflowResult:
        workflow_id = command.workflow_id
        current = self._load(workflow_id)
        events = workflows.decide(command, current.state)
        if not events:
            assert current.state is not None  # decide raised NotFound otherwise
            return WorkflowResult(current.envelopes[-1].position, current.state)
        envelopes = stamp(ctx, workflow_id, current.version, events)
        stored = self.store.append(envelopes, command=ctx.claim(workflow_id))
        state = load(
            self.store, workflow_id, _fold(workflow_id), None, current.envelopes + stored
        ).state
        assert state is not None
        return WorkflowResult(stored[-1].position, state)

    def _load(self, workflow_id: UUID) -> Loaded[workflows.Workflow | None]:
        return load(self.store, workflow_id, _fold(workflow_id), None)


def _graph(value: object) -> object:
    """A graph as a client gives it (a dict from GraphQL, or a ``Graph``): the command model
    checks its shape; a non-object is refused here with the same code."""
    if isinstance(value, workflows.Graph | dict):
        return value
    raise ValidationFailed(
        "graph must be an object with nodes and edges", details={"graph": "type"}
    )
