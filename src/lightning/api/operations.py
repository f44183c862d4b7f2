"""Operators' queries: how the consumers are doing and what they parked. Merged into the
``Query`` type by ``schema.build_schema``."""

from __future__ import annotations

import functools
from dataclasses import asdict

import strawberry
from strawberry.types import Info

from ..consumers import ParkedEvent, ParkedFilter
from ..projections import KIND as PROJECTIONS
from .context import CanRead, app_of, check_first, consistent, row_size, run, within_budget
from .types import ConsumerStatus, ParkedEventRecord, ProjectionStatus, decode_place


@strawberry.type
class OperationsQuery:
    @strawberry.field(permission_classes=[CanRead])
    async def projections(
        self, info: Info, consistent_with: int | None = None
    ) -> list[ProjectionStatus]:
        names = app_of(info).consumers.handler_names(PROJECTIONS)
        await consistent(info, consistent_with, *names, check_parked=False)
        statuses = await run(app_of(info).consumers.statuses, PROJECTIONS)
        return [ProjectionStatus.from_data(s) for s in statuses]

    @strawberry.field(
        permission_classes=[CanRead],
        description="Every handler of every consumer kind: where it stands and how it is doing.",
    )
    async def consumers(
        self, info: Info, consistent_with: int | None = None
    ) -> list[ConsumerStatus]:
        await consistent(info, consistent_with, check_parked=False)
        return [ConsumerStatus.from_data(s) for s in await run(app_of(info).consumers.statuses)]

    @strawberry.field(
        permission_classes=[CanRead],
        description="Events a handler could not apply, each with every later event of its key"
        " behind it, in order; they wait for `lightning consumers retry-parked` or"
        " `skip-parked`.",
    )
    async def parked_events(
        self,
        info: Info,
        consumer: str | None = None,
        handler: str | None = None,
        key: str | None = None,
        first: int = 100,
        after: str | None = None,
        consistent_with: int | None = None,
    ) -> list[ParkedEventRecord]:
        check_first(first)
        place = None if after is None else decode_place(after)
        await consistent(info, consistent_with, check_parked=False)
        which = ParkedFilter(consumer, handler, key)
        read = functools.partial(app_of(info).consumers.parked, which, first, place)
        parked = await within_budget(info, lambda: run(read), _size)
        return [ParkedEventRecord.from_data(p) for p in parked]


def _size(parked: list[ParkedEvent]) -> int:
    return sum(row_size(asdict(p)) for p in parked)
