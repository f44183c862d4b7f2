"""GraphQL output and input types. Mapped explicitly from states and rows, never the domain
objects themselves."""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any, Generic, Self, TypeVar, cast

import strawberry
from strawberry.scalars import JSON

from ..consumers import HandlerStatus, ParkedEvent
from ..domain.agents import Agent as AgentState
from ..domain.api_keys import ApiKey as ApiKeyState
from ..domain.errors import ValidationFailed
from ..projections.queries import Page
from ..store.backends import Row
from ..store.envelope import Envelope


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


T = TypeVar("T")
S = TypeVar("S")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    """A cursor-paginated list (GraphQL names: AgentConnection, ApiKeyConnection, …)."""

    edges: list[Edge[T]]
    page_info: PageInfo


def connection(page: Page[S], node: Callable[[S], T]) -> Connection[T]:
    return Connection(
        edges=[Edge(cursor=cursor, node=node(row)) for cursor, row in page.items],
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
    )


@strawberry.type(description="A workflow version that uses the agent.")
class AttachedWorkflow:
    workflow_id: strawberry.ID
    version: int


@strawberry.type
class Agent:
    id: strawberry.ID
    name: str
    description: str
    provider: str
    model: str
    temperature: float
    max_tokens: int
    system_prompt: str
    tools: list[str]
    status: str
    config_version: int
    version: int
    workflows: list[AttachedWorkflow] = strawberry.field(
        description="the workflow versions attached to it (by the publish saga)"
    )

    @classmethod
    def from_state(cls, state: AgentState, version: int | None = None) -> Agent:
        c = state.config
        return cls(
            id=strawberry.ID(str(state.id)),
            name=c.name,
            description=c.description,
            provider=c.provider,
            model=c.model,
            temperature=c.temperature,
            max_tokens=c.max_tokens,
            system_prompt=c.system_prompt,
            tools=list(c.tools),
            status=state.status,
            config_version=state.config_version,
            version=version if version is not None else state.version,
            workflows=[
                AttachedWorkflow(workflow_id=strawberry.ID(str(w.workflow_id)), version=w.version)
                for w in state.workflows
            ],
        )

    @classmethod
    def from_row(cls, row: Row) -> Agent:
        return cls(
            id=strawberry.ID(row["id"]),
            name=row["name"],
            description=row["description"],
            provider=row["provider"],
            model=row["model"],
            temperature=row["temperature"],
            max_tokens=row["max_tokens"],
            system_prompt=row["system_prompt"],
            tools=list(row["tools"]),
            status=row["status"],
            config_version=row["config_version"],
            version=row["version"],
            workflows=[
                AttachedWorkflow(workflow_id=strawberry.ID(w["workflow_id"]), version=w["version"])
                for w in row["workflows"]
            ],
        )


@strawberry.type
class ApiKey:
    id: strawberry.ID
    name: str
    role: str
    status: str
    expires_at: datetime | None
    rotation_policy: str | None
    previous_valid_until: datetime | None
    rotation_due_at: datetime | None = strawberry.field(
        description="when its rotation policy wants it rotated, once the notice is given"
    )
    deliver_to: strawberry.ID | None = strawberry.field(
        default=None,
        description="the webhook subscription its policy's automatic rotations are sent to",
    )

    @classmethod
    def from_state(cls, state: ApiKeyState) -> ApiKey:
        return cls(
            id=strawberry.ID(str(state.id)),
            name=state.name,
            role=state.role,
            status=state.status,
            expires_at=state.expires_at,
            rotation_policy=state.rotation_policy,
            previous_valid_until=state.previous_valid_until,
            rotation_due_at=state.rotation_due_at,
            deliver_to=None if state.deliver_to is None else strawberry.ID(str(state.deliver_to)),
        )

    @classmethod
    def from_row(cls, row: Row) -> ApiKey:
        return cls(
            id=strawberry.ID(row["id"]),
            name=row["name"],
            role=row["role"],
            status=row["status"],
            expires_at=_time(row["expires_at"]),
            rotation_policy=row["rotation_policy"],
            previous_valid_until=_time(row["previous_valid_until"]),
            rotation_due_at=_time(row["rotation_due_at"]),
            deliver_to=None if row.get("deliver_to") is None else strawberry.ID(row["deliver_to"]),
        )


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@strawberry.type(description="One event in the envelope of DESIGN §3.")
class EventRecord:
    id: strawberry.ID
    type: str
    aggregate_type: str
    aggregate_id: strawberry.ID
    version: int
    position: int
    occurred_at: datetime
    actor: str
    correlation_id: strawberry.ID
    causation_id: strawberry.ID | None
    schema_version: int
    data: JSON

    @classmethod
    def from_envelope(cls, e: Envelope) -> EventRecord:
        return cls(
            id=strawberry.ID(str(e.id)),
            type=e.type,
            aggregate_type=e.aggregate_type,
            aggregate_id=strawberry.ID(str(e.aggregate_id)),
            version=e.version,
            position=e.position,
            occurred_at=e.occurred_at,
            actor=e.actor,
            correlation_id=strawberry.ID(str(e.correlation_id)),
            causation_id=None if e.causation_id is None else strawberry.ID(str(e.causation_id)),
            schema_version=e.schema_version,
            data=cast(JSON, e.public_data()),
        )

    @classmethod
    def from_row(cls, row: Row) -> EventRecord:
        data: Any = json.loads(row["data"])
        return cls(
            id=strawberry.ID(row["event_id"]),
            type=row["type"],
            aggregate_type=row["aggregate_type"],
            aggregate_id=strawberry.ID(row["aggregate_id"]),
            version=row["version"],
            position=row["position"],
            occurred_at=datetime.fromisoformat(row["occurred_at"]),
            actor=row["actor"],
            correlation_id=strawberry.ID(row["correlation_id"]),
            causation_id=None
            if row["causation_id"] is None
            else strawberry.ID(row["causation_id"]),
            schema_version=1,
            data=data,
        )


@strawberry.type(description="An aggregate's state as it was after a given event (time travel).")
class AggregateState:
    aggregate_id: strawberry.ID
    aggregate_type: str
    version: int
    position: int
    occurred_at: datetime
    state: JSON


@strawberry.type
class ProjectionStatus:
    name: str
    position: int
    lag: int
    status: str
    error: str | None
    parked: int

    @classmethod
    def from_data(cls, s: HandlerStatus) -> Self:
        return cls(**{f.name: getattr(s, f.name) for f in fields(cls)})


@strawberry.type(
    description="A handler of a consumer kind (kind projections: one per read model). status:"
    " running, catching_up, retrying (an event failed and is tried again), degraded (events"
    " parked), stale (no worker has reported lately)."
)
class ConsumerStatus(ProjectionStatus):
    kind: str


@strawberry.type(
    name="ParkedEvent",
    description="An event a handler could not apply. The first of a key carries the error and"
    " the attempts; the ones behind it wait (attempts 0, no error).",
)
class ParkedEventRecord:
    consumer: str
    handler: str
    key: str
    position: int
    type: str
    error: str | None
    attempts: int
    parked_at: datetime
    cursor: str = strawberry.field(description="pass as `after` for the events after this one")

    @classmethod
    def from_data(cls, p: ParkedEvent) -> ParkedEventRecord:
        fields_ = asdict(p) | {"parked_at": datetime.fromisoformat(p.parked_at)}
        del fields_["skipping"]
        return cls(**fields_, cursor=encode_place((p.consumer, p.handler, p.key, p.position)))


def encode_place(place: tuple[str, str, str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(place)).encode()).decode()


def decode_place(cursor: str) -> tuple[str, str, str, int]:
    """A cursor from ``encode_place`` (anything else: BAD_USER_INPUT, never a crash)."""
    try:
        if len(cursor) > 2_000:
            raise ValueError("too long")
        consumer, handler, key, position = json.loads(base64.urlsafe_b64decode(cursor))
        if not all(_plain(v) for v in (consumer, handler, key)):
            raise ValueError(cursor)
        if type(position) is not int or not 0 <= position < 2**63:
            raise ValueError(cursor)
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise ValidationFailed(
            "after is not a cursor from this list", details={"after": cursor[:100]}
        ) from None
    return consumer, handler, key, position


def _plain(value: object) -> bool:
    """Text a database column takes: bounded, no control characters, no lone surrogates."""
    return (
        isinstance(value, str)
        and len(value) <= 200
        and not any(unicodedata.category(c)[0] == "C" for c in value)
    )


# ---- inputs -------------------------------------------------------------------------------------


@strawberry.input
class RegisterAgentInput:
    name: str
    provider: str
    model: str
    description: str = ""
    temperature: float = 0.7
    max_tokens: int = 4096
    system_prompt: str = ""
    tools: list[str] = strawberry.field(default_factory=list)
    command_id: str | None = strawberry.field(
        default=None,
        description="your id for this command: sent again, it is not applied again and answers"
        " its first result (secret: null)",
    )


@strawberry.input
class ReconfigureAgentInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    command_id: str | None = strawberry.field(
        default=None,
        description="your id for this command: sent again, it is not applied again and answers"
        " its first result (secret: null)",
    )


@strawberry.input
class IssueApiKeyInput:
    name: str
    role: str
    expires_at: datetime | None = None
    rotation_policy: str | None = None
    deliver_to: strawberry.ID | None = strawberry.field(
        default=None,
        description="a webhook subscription: with a rotationPolicy, the key is then rotated"
        " automatically at the policy's time and the new secret delivered there (only there)",
    )
    command_id: str | None = strawberry.field(
        default=None,
        description="your id for this command: sent again, it is not applied again and answers"
        " its first result (secret: null)",
    )


# ---- payloads -----------------------------------------------------------------------------------


@strawberry.type
class RegisterAgentPayload:
    position: int
    agent: Agent


@strawberry.type
class ReconfigureAgentPayload:
    position: int
    agent: Agent


@strawberry.type
class RetireAgentPayload:
    position: int
    agent: Agent


@strawberry.type
class IssueApiKeyPayload:
    secret: str | None = strawberry.field(description="shown once: null when the command repeats")
    position: int
    api_key: ApiKey


@strawberry.type
class RotateApiKeyPayload:
    secret: str | None = strawberry.field(description="shown once: null when the command repeats")
    position: int
    api_key: ApiKey


@strawberry.type
class RevokeApiKeyPayload:
    position: int
    api_key: ApiKey
