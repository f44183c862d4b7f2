"""The GraphQL schema. Resolvers are thin: read the typed context, call one service (in a worker
thread: eventsourcing is synchronous), map the result to GraphQL types."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from typing import cast
from uuid import UUID

import strawberry
from strawberry.extensions import MaxTokensLimiter
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import Info

from ..domain.errors import NotFound, ValidationFailed
from ..domain.event_types import TypeFilter
from ..domain.registry import EVENT_CLASSES
from ..projections.queries import MAX_PAGE, Page
from ..store.backends import Row
from ..store.envelope import Envelope, format_time
from ..store.event_store import EventStore
from .context import (
    CanAdminister,
    CanOperate,
    CanRead,
    app_of,
    check_first,
    consistent,
    ctx_of,
    envelope_size,
    key_changed,
    row_size,
    run,
    uuid_arg,
    within_budget,
)
from .errors import ErrorCodes
from .execution import Executor, Schema, UTCDateTime
from .feed import EventFeed, matcher
from .limits import Limits, ResourceLimits
from .operations import OperationsQuery
from .sockets import Socket
from .types import (
    Agent,
    AggregateState,
    ApiKey,
    Connection,
    EventRecord,
    IssueApiKeyInput,
    IssueApiKeyPayload,
    ReconfigureAgentInput,
    ReconfigureAgentPayload,
    RegisterAgentInput,
    RegisterAgentPayload,
    RetireAgentPayload,
    RevokeApiKeyPayload,
    RotateApiKeyPayload,
    connection,
)
from .webhooks import WebhookMutation, WebhookQuery
from .workflows import WorkflowMutation, WorkflowQuery

log = logging.getLogger(__name__)


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[CanRead])
    async def agents(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        status: str | None = None,
        provider: str | None = None,
        consistent_with: int | None = None,
    ) -> Connection[Agent]:
        await consistent(info, consistent_with, "agents")
        read = functools.partial(
            app_of(info).read_models.agents,
            first=first,
            after=after,
            status=status,
            provider=provider,
        )
        page = await within_budget(info, lambda: run(read), _page_size)
        return connection(page, Agent.from_row)

    @strawberry.field(
        permission_classes=[CanRead],
        description="An agent; with asOf or version, as it was then (read from the event store).",
    )
    async def agent(
        self,
        info: Info,
        id: strawberry.ID,
        as_of: datetime | None = None,
        version: int | None = None,
        consistent_with: int | None = None,
    ) -> Agent | None:
        agent_id = uuid_arg(id)
        app = app_of(info)
        if as_of is not None or version is not None:
            state, envelope = await run(app.agents.state_at, agent_id, version=version, as_of=as_of)
            return Agent.from_state(state, envelope.version)
        await consistent(info, consistent_with, "agents", key=str(agent_id))
        row = await run(app.read_models.agent, str(agent_id))
        return None if row is None else Agent.from_row(row)

    @strawberry.field(permission_classes=[CanAdminister])
    async def api_keys(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        consistent_with: int | None = None,
    ) -> Connection[ApiKey]:
        await consistent(info, consistent_with, "api_keys")
        read = functools.partial(app_of(info).read_models.api_keys, first=first, after=after)
        page = await within_budget(info, lambda: run(read), _page_size)
        return connection(page, ApiKey.from_row)

    @strawberry.field(permission_classes=[CanAdminister])
    async def api_key(
        self, info: Info, id: strawberry.ID, consistent_with: int | None = None
    ) -> ApiKey:
        del consistent_with  # read from the event store, which is always consistent with itself
        return ApiKey.from_state(await run(app_of(info).api_keys.get, uuid_arg(id)))

    @strawberry.field(
        permission_classes=[CanRead],
        description="The events of one aggregate, oldest first: `first` (1-500) of them after"
        " version `afterVersion`.",
    )
    async def history(
        self,
        info: Info,
        aggregate_id: strawberry.ID,
        first: int = MAX_PAGE,
        after_version: int = 0,
        consistent_with: int | None = None,
    ) -> list[EventRecord]:
        del consistent_with  # the event store is always consistent with itself
        check_first(first)
        if not 0 <= after_version < 2**62:
            raise ValidationFailed("afterVersion must lie between 0 and 2^62")
        agg = uuid_arg(aggregate_id, "aggregateId")
        load = functools.partial(
            app_of(info).store.load, agg, after_version=after_version, limit=first
        )
        envelopes = await within_budget(info, lambda: run(load), _envelopes_size)
        if not envelopes and after_version == 0:
            raise NotFound(f"no events for aggregate {agg}")
        return [EventRecord.from_envelope(e) for e in envelopes]

    @strawberry.field(permission_classes=[CanRead])
    async def state_at(
        self,
        info: Info,
        aggregate_id: strawberry.ID,
        version: int | None = None,
        as_of: datetime | None = None,
        consistent_with: int | None = None,
    ) -> AggregateState:
        del consistent_with
        from ..replay import replay

        result = await run(
            replay, app_of(info), uuid_arg(aggregate_id, "aggregateId"), version, as_of
        )
        return AggregateState(
            aggregate_id=strawberry.ID(str(result.aggregate_id)),
            aggregate_type=result.aggregate_type,
            version=result.version,
            position=result.position,
            occurred_at=result.occurred_at,
            state=cast(JSON, result.state),
        )

    @strawberry.field(
        permission_classes=[CanRead], description="Events from the store, oldest first."
    )
    async def events(
        self,
        info: Info,
        after: int = 0,
        first: int = 100,
        types: list[str] | None = None,
        aggregate_id: strawberry.ID | None = None,
        consistent_with: int | None = None,
    ) -> list[EventRecord]:
        del consistent_with
        check_first(first)
        if not 0 <= after < 2**63:
            raise ValidationFailed("after must lie between 0 and 2^63")
        store = app_of(info).store
        patterns = TypeFilter.parse(types)
        if aggregate_id is not None:
            agg = uuid_arg(aggregate_id, "aggregateId")
            accept = matcher(patterns, None)
            read = functools.partial(_stream_page, store, agg, accept, after, first)
            found = await within_budget(info, lambda: run(read), _envelopes_size)
        else:
            wanted = [] if patterns is None else patterns.among(EVENT_CLASSES)
            if patterns is not None and not wanted:
                return []
            load = functools.partial(store.read, after, first, types=wanted)
            found = await within_budget(info, lambda: run(load), _envelopes_size)
        return [EventRecord.from_envelope(e) for e in found]

    @strawberry.field(permission_classes=[CanRead], description="Every action, newest first.")
    async def audit_log(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        actor: str | None = None,
        aggregate_id: strawberry.ID | None = None,
        types: list[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        consistent_with: int | None = None,
    ) -> Connection[EventRecord]:
        await consistent(info, consistent_with, "audit_log")
        read = functools.partial(
            app_of(info).read_models.audit_log,
            first=first,
            after=after,
            actor=actor,
            aggregate_id=None
            if aggregate_id is None
            else str(uuid_arg(aggregate_id, "aggregateId")),
            types=TypeFilter.parse(types),
            since=None if since is None else format_time(since),
            until=None if until is None else format_time(until),
        )
        page = await within_budget(info, lambda: run(read), _page_size)
        return connection(page, EventRecord.from_row)


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[CanOperate])
    async def register_agent(self, info: Info, input: RegisterAgentInput) -> RegisterAgentPayload:
        fields = strawberry.asdict(input)
        del fields["command_id"]
        ctx = ctx_of(info, input.command_id)
        result = await run(app_of(info).agents.register, ctx, **fields)
        return RegisterAgentPayload(position=result.position, agent=Agent.from_state(result.agent))

    @strawberry.mutation(permission_classes=[CanOperate])
    async def reconfigure_agent(
        self, info: Info, input: ReconfigureAgentInput
    ) -> ReconfigureAgentPayload:
        changes = {
            k: v
            for k, v in strawberry.asdict(input).items()
            if v is not None and k not in ("id", "command_id")
        }
        ctx = ctx_of(info, input.command_id)
        result = await run(app_of(info).agents.reconfigure, ctx, uuid_arg(input.id), **changes)
        return ReconfigureAgentPayload(
            position=result.position, agent=Agent.from_state(result.agent)
        )

    @strawberry.mutation(permission_classes=[CanOperate])
    async def retire_agent(
        self, info: Info, id: strawberry.ID, command_id: str | None = None
    ) -> RetireAgentPayload:
        result = await run(app_of(info).agents.retire, ctx_of(info, command_id), uuid_arg(id))
        return RetireAgentPayload(position=result.position, agent=Agent.from_state(result.agent))

    @strawberry.mutation(permission_classes=[CanAdminister])
    async def issue_api_key(self, info: Info, input: IssueApiKeyInput) -> IssueApiKeyPayload:
        result = await run(
            app_of(info).api_keys.issue,
            ctx_of(info, input.command_id),
            name=input.name,
            role=input.role,
            expires_at=input.expires_at,
            rotation_policy=input.rotation_policy,
            deliver_to=None
            if input.deliver_to is None
            else uuid_arg(input.deliver_to, "deliverTo"),
        )
        return IssueApiKeyPayload(
            secret=result.secret, position=result.position, api_key=ApiKey.from_state(result.key)
        )

    @strawberry.mutation(permission_classes=[CanAdminister])
    async def rotate_api_key(
        self,
        info: Info,
        id: strawberry.ID,
        grace_period_seconds: int | None = None,
        compromised: bool = False,
        command_id: str | None = None,
    ) -> RotateApiKeyPayload:
        result = await run(
            app_of(info).api_keys.rotate,
            ctx_of(info, command_id),
            uuid_arg(id),
            grace_period_seconds=grace_period_seconds,
            compromised=compromised,
        )
        key_changed(info, result.key.id)
        return RotateApiKeyPayload(
            secret=result.secret, position=result.position, api_key=ApiKey.from_state(result.key)
        )

    @strawberry.mutation(permission_classes=[CanAdminister])
    async def revoke_api_key(
        self, info: Info, id: strawberry.ID, reason: str = "", command_id: str | None = None
    ) -> RevokeApiKeyPayload:
        ctx = ctx_of(info, command_id)
        result = await run(app_of(info).api_keys.revoke, ctx, uuid_arg(id), reason=reason)
        key_changed(info, result.key.id)
        return RevokeApiKeyPayload(position=result.position, api_key=ApiKey.from_state(result.key))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[CanRead],
        description="Live events; with after, replays from that position first (no gap).",
    )
    async def events(
        self,
        info: Info,
        types: list[str] | None = None,
        aggregate_id: strawberry.ID | None = None,
        after: int | None = None,
    ) -> AsyncGenerator[EventRecord, None]:
        feed: EventFeed = info.context["feed"]
        if after is not None and not 0 <= after <= feed.head:
            head = await run(app_of(info).store.max_position)  # the feed may not be there yet
            if not 0 <= after <= head:
                raise ValidationFailed(
                    f"after must lie between 0 and the newest position {head}",
                    details={"after": after, "head": head},
                )
        agg = None if aggregate_id is None else str(uuid_arg(aggregate_id, "aggregateId"))
        accept = matcher(TypeFilter.parse(types), agg)
        socket: Socket | None = info.context.get("socket")
        overflow = socket.too_slow if socket is not None else (lambda: None)
        async for envelope in feed.subscribe(accept, after, overflow):
            yield EventRecord.from_envelope(envelope)


def _page_size(page: Page[Row]) -> int:
    return sum(row_size(row) for _, row in page.items)


def _envelopes_size(envelopes: list[Envelope]) -> int:
    return sum(envelope_size(e) for e in envelopes)


def _stream_page(
    store: EventStore, agg: UUID, accept: Callable[[Envelope], bool], after: int, first: int
) -> list[Envelope]:
    """Up to ``first`` events of one aggregate after position ``after`` that ``accept`` wants,
    read a page at a time (a long stream is never loaded whole)."""
    found: list[Envelope] = []
    while len(found) < first:
        page = store.load(agg, after_position=after, limit=first)
        found += [e for e in page if accept(e)]
        if len(page) < first:
            break
        after = page[-1].position
    return found[:first]


def build_schema(limits: Limits | None = None) -> strawberry.Schema:
    limits = limits or Limits()
    return Schema(
        query=merge_types("Query", (Query, WorkflowQuery, WebhookQuery, OperationsQuery)),
        mutation=merge_types("Mutation", (Mutation, WorkflowMutation, WebhookMutation)),
        subscription=Subscription,
        # Factories, not instances: an extension holds its request's execution context.
        extensions=[
            lambda: MaxTokensLimiter(limits.tokens),
            lambda: ResourceLimits(limits=limits),
            ErrorCodes,
        ],
        config=StrawberryConfig(scalar_map={datetime: UTCDateTime}),
        execution_context_class=Executor,
    )
