"""A workflow's graph and its guards (DESIGN §4, the limits of §6)."""

from __future__ import annotations

import json
from collections import deque
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from ..components import AgentConfig, component
from ..errors import ValidationFailed
from ..limits import (
    NODE_CONFIG_MAX_BYTES,
    WORKFLOW_EDGES_MAX,
    WORKFLOW_NODES_MAX,
    control_characters,
)


class Frozen(BaseModel):
    # Read tolerantly: a field a newer version adds to a node or an edge is ignored, never a
    # crash on replay. (What a client sends is typed by the API before it gets here.)
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Position(Frozen):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    x: float
    y: float


class Node(Frozen):
    id: str
    kind: str
    config: dict[str, JsonValue] = Field(default_factory=dict)
    position: Position | None = None

    @field_validator("position", mode="wrap")
    @classmethod
    def _no_position_rather_than_a_bad_one(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> Position | None:
        """A position is for drawing only: one stored with nulls (an older version wrote a
        non-finite number so) reads as none, rather than making the graph unreadable. Any
        other bad position is refused."""
        try:
            position: Position | None = handler(value)
        except ValidationError:
            if isinstance(value, dict) and None in value.values():
                return None
            raise
        return position


class Edge(Frozen):
    source: str
    source_port: str = Field(default="out", alias="sourcePort")
    target: str
    target_port: str = Field(default="in", alias="targetPort")


class Graph(Frozen):
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...] = ()


def check_graph(graph: Graph) -> tuple[UUID, ...]:
    """Every guard of a graph a command brings (DESIGN §4 and the limits of §6); the agents
    it references, each once, in graph order (a topological order, ties in the order the nodes
    are listed). Graphs read back from the store are never checked again."""
    if not 1 <= len(graph.nodes) <= WORKFLOW_NODES_MAX:
        raise _bad("nodes", f"a graph has 1 to {WORKFLOW_NODES_MAX} nodes")
    if len(graph.edges) > WORKFLOW_EDGES_MAX:
        raise _bad("edges", f"a graph has at most {WORKFLOW_EDGES_MAX} edges")
    ports = {node.id: _check_node(node) for node in graph.nodes}
    if len(ports) != len(graph.nodes):
        raise _bad("nodes", "node ids must be unique")
    following: dict[str, list[str]] = {node.id: [] for node in graph.nodes}
    for edge in graph.edges:
        for end, port, side in (
            (edge.source, edge.source_port, 1),
            (edge.target, edge.target_port, 0),
        ):
            if end not in ports:
                raise _bad("edges", f"an edge names node {end[:100]!r}, which the graph lacks")
            if port not in ports[end][side]:
                offered = ", ".join(ports[end][side])
                raise _bad("edges", f"node {end!r} has no port {port[:100]!r}; it has {offered}")
        if edge.target in following[edge.source]:
            raise _bad("edges", f"two edges join {edge.source!r} to {edge.target!r}")
        following[edge.source].append(edge.target)
    order = _topological(graph, following)
    _check_connected(graph, following)
    agents = {node.id: node for node in graph.nodes if node.kind == "agent"}
    used = (AgentConfig.model_validate(agents[n].config).agent_id for n in order if n in agents)
    return tuple(dict.fromkeys(used))  # an agent in two nodes is attached once


def _check_node(node: Node) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not 1 <= len(node.id) <= 100 or control_characters(node.id):
        raise _bad("nodes", "a node id has 1 to 100 characters, none of them control characters")
    try:
        encoded = json.dumps(node.config, allow_nan=False).encode()
    except ValueError:
        raise _bad(
            "config", f"node {node.id!r}'s config holds a number that is not finite"
        ) from None
    if len(encoded) > NODE_CONFIG_MAX_BYTES:
        raise _bad("config", f"node {node.id!r}'s config is over {NODE_CONFIG_MAX_BYTES:,} bytes")
    kind = component(node.kind)
    config = kind.parse(node.config)
    return kind.inputs(config), kind.outputs(config)


def _topological(graph: Graph, following: dict[str, list[str]]) -> list[str]:
    waiting = {node.id: 0 for node in graph.nodes}
    for targets in following.values():
        for target in targets:
            waiting[target] += 1
    ready = deque(node.id for node in graph.nodes if waiting[node.id] == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for target in following[current]:
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
    if len(order) != len(graph.nodes):
        raise _bad("edges", "the graph has a cycle; a workflow is a DAG")
    return order


def _check_connected(graph: Graph, following: dict[str, list[str]]) -> None:
    neighbours: dict[str, set[str]] = {node.id: set() for node in graph.nodes}
    for source, targets in following.items():
        for target in targets:
            neighbours[source].add(target)
            neighbours[target].add(source)
    seen = {graph.nodes[0].id}
    todo = [graph.nodes[0].id]
    while todo:
        for other in neighbours[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    if len(seen) != len(graph.nodes):
        raise _bad("edges", "the graph is not connected: every node must be reachable")


def _bad(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details={f"graph.{field}": message})
