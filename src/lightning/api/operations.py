"""Operators' queries: how the consumers are doing and what they parked. Merged into the
``Query`` type by ``schema.build_schema``."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from ..consumers import ParkedFilter
from ..domain.errors import ValidationFailed
from ..projections import KIND as PROJECTIONS
from .context import MAX_PAGE, CanRead, app_of, consistent, run
from .types import ConsumerStatus, ParkedEventRecord, ProjectionStatus, decode_place


@strawberry.type
class OperationsQuery:
    @strawberry.field(permission_classes=[CanRead])
    async def projections(
        self, info: Info, consistent_with: int | None = None
    ) -> list[ProjectionStatus]:
        await consistent(info, consistent_with, check_parked=False)
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
        if not 0 < first <= MAX_PAGE:
            raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}")
        place = None if after is None else decode_place(after)
        await consistent(info, consistent_with, check_parked=False)
        which = ParkedFilter(consumer, handler, key)
        parked = await run(app_of(info).consumers.parked, which, first, place)
        return [ParkedEventRecord.from_data(p) for p in parked]
