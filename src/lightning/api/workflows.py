"""Workflows and sagas in GraphQL: queries and mutations merged into ``Query`` and ``Mutation``
by ``schema.build_schema``. Resolvers are thin: one service or read-model call each."""

from __future__ import annotations

import functools
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from ..projections.queries import Page
from ..sagas import SagaView
from ..services.workflows import WorkflowResult
from ..store.backends import Row
from .context import (
    CanOperate,
    CanRead,
    app_of,
    consistent,
    ctx_of,
    row_size,
    run,
    uuid_arg,
    within_budget,
)
from .types import Agent, Connection, Edge, PageInfo
from .workflow_types import (
    CreateWorkflowInput,
    Saga,
    SagaStatus,
    UpdateWorkflowDraftInput,
    Workflow,
    WorkflowPayload,
    WorkflowStatus,
)


@strawberry.type
class RestoreAgentVersionPayload:
    position: int
    agent: Agent


def _selects(selections: list[Any], name: str) -> bool:
    """Whether ``name`` is asked for anywhere below these selections (fragments included)."""
    for selection in selections:
        if isinstance(selection, SelectedField) and selection.name == name:
            return True
        if isinstance(selection, SelectedField | FragmentSpread | InlineFragment) and _selects(
            list(selection.selections), name
        ):
            return True
    return False


def _page_with_versions(
    app: Any, page: Page[Row], versions: bool
) -> tuple[Page[Row], dict[str, list[Row]]]:
    ids = [row["id"] for _, row in page.items]
    return page, app.read_models.workflow_versions(ids) if versions and ids else {}


def _size(found: tuple[Page[Row], dict[str, list[Row]]]) -> int:
    page, versions = found
    return sum(row_size(r) for _, r in page.items) + sum(
        row_size(v) for rows in versions.values() for v in rows
    )


@strawberry.type
class WorkflowQuery:
    @strawberry.field(permission_classes=[CanRead])
    async def workflow(
        self, info: Info, id: strawberry.ID, consistent_with: int | None = None
    ) -> Workflow | None:
        workflow_id = str(uuid_arg(id))
        await consistent(info, consistent_with, "workflows", key=workflow_id)
        models = app_of(info).read_models

        def read() -> tuple[Row | None, list[Row]]:
            row = models.workflow(workflow_id)
            return row, models.workflow_versions([workflow_id])[workflow_id] if row else []

        row, versions = await within_budget(
            info, lambda: run(read), lambda f: row_size(f[0] or {}) + sum(map(row_size, f[1]))
        )
        return None if row is None else Workflow.from_row(row, versions)

    @strawberry.field(permission_classes=[CanRead])
    async def workflows(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        status: WorkflowStatus | None = None,
        consistent_with: int | None = None,
    ) -> Connection[Workflow]:
        await consistent(info, consistent_with, "workflows")
        app = app_of(info)
        wants_versions = _selects(list(info.selected_fields), "versions")

        def read() -> tuple[Page[Row], dict[str, list[Row]]]:
            page = app.read_models.workflows(
                first=first, after=after, status=None if status is None else status.value
            )
            return _page_with_versions(app, page, wants_versions)

        page, versions = await within_budget(info, lambda: run(read), _size)
        return Connection(
            edges=[
                Edge(cursor=cursor, node=Workflow.from_row(row, versions.get(row["id"], [])))
                for cursor, row in page.items
            ],
            page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
        )

    @strawberry.field(
        permission_classes=[CanRead],
        description="The workflow document (its name and its draft graph, or `version`'s), in"
        " the JSON Schema of /schemas/workflow.json; importWorkflow takes it back.",
    )
    async def export_workflow(
        self,
        info: Info,
        id: strawberry.ID,
        version: int | None = None,
        consistent_with: int | None = None,
    ) -> JSON:
        del consistent_with  # read from the event store
        export = functools.partial(app_of(info).workflows.export_document, uuid_arg(id), version)
        return cast(JSON, await within_budget(info, lambda: run(export), lambda d: len(str(d))))

    @strawberry.field(
        permission_classes=[CanRead],
        description="Saga instances, newest first: how each stands, its steps, its next timer.",
    )
    async def sagas(
        self,
        info: Info,
        type: str | None = None,
        status: SagaStatus | None = None,
        first: int = 50,
        after: str | None = None,
        consistent_with: int | None = None,
    ) -> Connection[Saga]:
        await consistent(info, consistent_with, check_parked=False)
        read = functools.partial(
            app_of(info).sagas.listed,
            type=type,
            status=None if status is None else status.value,
            first=first,
            after=after,
        )
        items, more = await within_budget(info, lambda: run(read), _sagas_size)
        return Connection(
            edges=[Edge(cursor=cursor, node=Saga.from_view(view)) for cursor, view in items],
            page_info=PageInfo(has_next_page=more, end_cursor=items[-1][0] if items else None),
        )


def _sagas_size(found: tuple[list[tuple[str, SagaView]], bool]) -> int:
    return sum(256 + len(str(view.steps)) + len(view.failure_reason or "") for _, view in found[0])


def payload(result: WorkflowResult) -> WorkflowPayload:
    return WorkflowPayload(position=result.position, workflow=Workflow.from_state(result.workflow))


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(permission_classes=[CanOperate])
    async def create_workflow(self, info: Info, input: CreateWorkflowInput) -> WorkflowPayload:
        ctx = ctx_of(info, input.command_id)
        result = await run(
            app_of(info).workflows.create, ctx, name=input.name, graph=input.graph.to_dict()
        )
        return payload(result)

    @strawberry.mutation(permission_classes=[CanOperate])
    async def update_workflow_draft(
        self, info: Info, input: UpdateWorkflowDraftInput
    ) -> WorkflowPayload:
        ctx = ctx_of(info, input.command_id)
        result = await run(
            app_of(info).workflows.update_draft,
            ctx,
            uuid_arg(input.id),
            graph=input.graph.to_dict(),
        )
        return payload(result)

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="Ask for the draft to be published as a new version: the publish saga"
        " attaches it to its agents and then publishes it, or records why it could not.",
    )
    async def publish_workflow(
        self, info: Info, id: strawberry.ID, command_id: str | None = None
    ) -> WorkflowPayload:
        workflows = app_of(info).workflows
        return payload(await run(workflows.request_publish, ctx_of(info, command_id), uuid_arg(id)))

    @strawberry.mutation(permission_classes=[CanOperate])
    async def archive_workflow(
        self, info: Info, id: strawberry.ID, command_id: str | None = None
    ) -> WorkflowPayload:
        workflows = app_of(info).workflows
        return payload(await run(workflows.archive, ctx_of(info, command_id), uuid_arg(id)))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new draft equal to published version `version`.",
    )
    async def restore_workflow_version(
        self, info: Info, id: strawberry.ID, version: int, command_id: str | None = None
    ) -> WorkflowPayload:
        ctx, workflows = ctx_of(info, command_id), app_of(info).workflows
        return payload(await run(workflows.restore_version, ctx, uuid_arg(id), version))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new workflow (a draft) from a document exportWorkflow gave.",
    )
    async def import_workflow(
        self, info: Info, document: JSON, command_id: str | None = None
    ) -> WorkflowPayload:
        workflows = app_of(info).workflows
        return payload(await run(workflows.import_document, ctx_of(info, command_id), document))

    @strawberry.mutation(
        permission_classes=[CanOperate],
        description="A new configuration version equal to configuration version `version`.",
    )
    async def restore_agent_version(
        self, info: Info, id: strawberry.ID, version: int, command_id: str | None = None
    ) -> RestoreAgentVersionPayload:
        ctx = ctx_of(info, command_id)
        result = await run(app_of(info).agents.restore_version, ctx, uuid_arg(id), version)
        return RestoreAgentVersionPayload(
            position=result.position, agent=Agent.from_state(result.agent)
        )
