"""GraphQL types of workflows and sagas, mapped explicitly from read-model rows and states."""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from ..domain.workflows import Graph
from ..domain.workflows import Workflow as WorkflowState
from ..sagas import SagaView
from ..store.backends import Row


@strawberry.enum
class WorkflowStatus(Enum):
    DRAFT = "DRAFT"
    PUBLISHING = "PUBLISHING"
    PUBLISHED = "PUBLISHED"
    PUBLISH_FAILED = "PUBLISH_FAILED"
    ARCHIVED = "ARCHIVED"


@strawberry.enum
class WorkflowVersionStatus(Enum):
    PUBLISHING = "PUBLISHING"
    PUBLISHED = "PUBLISHED"
    PUBLISH_FAILED = "PUBLISH_FAILED"


@strawberry.enum
class SagaStatus(Enum):
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"
    FAILED = "FAILED"
    PARKED = "PARKED"


# ---- graphs -------------------------------------------------------------------------------------


@strawberry.type
class NodePosition:
    x: float
    y: float


@strawberry.type(description="A component of a workflow: agent, tool, router or human_review.")
class GraphNode:
    id: str
    kind: str
    config: JSON
    position: NodePosition | None


@strawberry.type(description="Joins an output port of one node to an input port of another.")
class GraphEdge:
    source: str
    source_port: str
    target: str
    target_port: str


@strawberry.type
class WorkflowGraph:
    nodes: list[GraphNode]
    edges: list[GraphEdge]

    @classmethod
    def of(cls, value: Graph | dict[str, Any]) -> WorkflowGraph:
        graph = value if isinstance(value, Graph) else Graph.model_validate(value)
        return cls(
            nodes=[
                GraphNode(
                    id=n.id,
                    kind=n.kind,
                    config=cast(JSON, n.config),
                    position=None
                    if n.position is None
                    else NodePosition(x=n.position.x, y=n.position.y),
                )
                for n in graph.nodes
            ],
            edges=[
                GraphEdge(
                    source=e.source,
                    source_port=e.source_port,
                    target=e.target,
                    target_port=e.target_port,
                )
                for e in graph.edges
            ],
        )


@strawberry.input
class NodePositionInput:
    x: float
    y: float


@strawberry.input
class GraphNodeInput:
    id: str
    kind: str = strawberry.field(description="agent, tool, router or human_review")
    config: JSON | None = strawberry.field(
        default=None,
        description="agent: {agentId}; tool: {name}; router: {routes: [...]}; human_review:"
        " {instructions} (none: {})",
    )
    position: NodePositionInput | None = None


@strawberry.input
class GraphEdgeInput:
    source: str
    target: str
    source_port: str = "out"
    target_port: str = "in"


@strawberry.input
class GraphInput:
    nodes: list[GraphNodeInput]
    edges: list[GraphEdgeInput] = strawberry.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "config": {} if n.config is None else n.config,
                    **(
                        {}
                        if n.position is None
                        else {"position": {"x": n.position.x, "y": n.position.y}}
                    ),
                }
                for n in self.nodes
            ],
            "edges": [
                {
                    "source": e.source,
                    "sourcePort": e.source_port,
                    "target": e.target,
                    "targetPort": e.target_port,
                }
                for e in self.edges
            ],
        }


_COMMAND_ID = (
    "your id for this command: sent again, it is not applied again and answers its first result"
)


@strawberry.input
class CreateWorkflowInput:
    name: str
    graph: GraphInput
    command_id: str | None = strawberry.field(default=None, description=_COMMAND_ID)


@strawberry.input
class UpdateWorkflowDraftInput:
    id: strawberry.ID
    graph: GraphInput
    command_id: str | None = strawberry.field(default=None, description=_COMMAND_ID)


# ---- workflows ----------------------------------------------------------------------------------


@strawberry.type(description="A requested version of a workflow; once requested it never changes.")
class WorkflowVersion:
    version: int
    status: WorkflowVersionStatus
    graph: WorkflowGraph
    agents: list[strawberry.ID] = strawberry.field(description="the agents it uses, in graph order")
    failure_reason: str | None
    degraded_by: list[strawberry.ID] = strawberry.field(description="its agents that were retired")

    @classmethod
    def from_row(cls, row: Row) -> WorkflowVersion:
        return cls(
            version=row["version"],
            status=WorkflowVersionStatus(row["status"]),
            graph=WorkflowGraph.of(json.loads(row["graph"])),
            agents=[strawberry.ID(a) for a in json.loads(row["agents"])],
            failure_reason=row["failure_reason"],
            degraded_by=[strawberry.ID(a) for a in json.loads(row["degraded_by"])],
        )


@strawberry.type(
    description="A workflow: a draft graph of components, and the versions requested from it."
    " A published workflow whose agent was retired is PUBLISHED with degraded: true."
)
class Workflow:
    id: strawberry.ID
    name: str
    status: WorkflowStatus
    draft_version: int
    draft: WorkflowGraph
    published_version: int | None
    degraded: bool
    failure_reason: str | None = strawberry.field(
        description="why the latest publication failed, when it did"
    )
    version: int = strawberry.field(description="number of events in the workflow's stream")
    versions: list[WorkflowVersion] = strawberry.field(
        description="every requested version, oldest first"
    )

    @classmethod
    def from_row(cls, row: Row, versions: list[Row]) -> Workflow:
        return cls(
            id=strawberry.ID(row["id"]),
            name=row["name"],
            status=WorkflowStatus(row["status"]),
            draft_version=row["draft_version"],
            draft=WorkflowGraph.of(json.loads(row["draft"])),
            published_version=row["published_version"],
            degraded=bool(row["degraded"]),
            failure_reason=row["failure_reason"],
            version=row["version"],
            versions=[WorkflowVersion.from_row(v) for v in versions],
        )

    @classmethod
    def from_state(cls, state: WorkflowState) -> Workflow:
        return cls(
            id=strawberry.ID(str(state.id)),
            name=state.name,
            status=WorkflowStatus(state.status),
            draft_version=state.draft_version,
            draft=WorkflowGraph.of(state.draft),
            published_version=state.published_version,
            degraded=state.degraded,
            failure_reason=state.failure_reason,
            version=state.version,
            versions=[
                WorkflowVersion(
                    version=v.version,
                    status=WorkflowVersionStatus(v.status),
                    graph=WorkflowGraph.of(v.graph),
                    agents=[strawberry.ID(str(a)) for a in v.agents],
                    failure_reason=v.failure_reason,
                    degraded_by=[strawberry.ID(str(a)) for a in v.degraded_by],
                )
                for v in state.versions
            ],
        )


@strawberry.type
class WorkflowPayload:
    position: int
    workflow: Workflow


# ---- sagas --------------------------------------------------------------------------------------


@strawberry.type
class SagaStep:
    name: str
    status: str = strawberry.field(
        description="PENDING, WAITING (on a timer), DONE, FAILED, COMPENSATED or CANCELLED"
    )
    at: datetime | None
    error: str | None


@strawberry.type(description="One instance of a saga (a process manager) and how it stands.")
class Saga:
    id: strawberry.ID = strawberry.field(description="the instance: a workflow, an API key, …")
    type: str
    status: SagaStatus
    correlation_id: strawberry.ID | None
    steps: list[SagaStep]
    next_timer_at: datetime | None
    failure_reason: str | None
    started_position: int
    position: int = strawberry.field(description="the last event it applied")
    started_at: datetime
    updated_at: datetime
    state: JSON = strawberry.field(description="what the saga keeps of this instance")

    @classmethod
    def from_view(cls, view: SagaView) -> Saga:
        return cls(
            id=strawberry.ID(view.id),
            type=view.type,
            status=SagaStatus(view.status),
            correlation_id=None
            if view.correlation_id is None
            else strawberry.ID(view.correlation_id),
            steps=[
                SagaStep(name=s.name, status=s.status, at=s.at, error=s.error) for s in view.steps
            ],
            next_timer_at=view.next_timer_at,
            failure_reason=view.failure_reason,
            started_position=view.started_position,
            position=view.position,
            started_at=view.started_at,
            updated_at=view.updated_at,
            state=cast(JSON, view.state),
        )
