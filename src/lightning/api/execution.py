"""How the schema executes: the executor (a subscription memory fix), error logging, and the
DateTime scalar every time argument goes through."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql.error import GraphQLError
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from ..domain.errors import ValidationFailed
from ..domain.limits import check_time
from ..store.envelope import format_time

log = logging.getLogger(__name__)


class Executor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core 3.3.2 shares one memo of collected subfields, keyed by the id() of a list
    it builds afresh for every event, between a subscription and all its per-event copies: a
    long subscription grows by one entry per event, for ever. Each event gets its own memo,
    which goes with it."""

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # Errors are coded (and unexpected ones logged) by ErrorCodes; a user's bad input or a
        # conflict is an answer, not a server fault, so it is not logged as an error here.
        for error in errors:
            log.debug("GraphQL error: %s", error.message)


def _parse_time(value: object) -> datetime:
    """An ISO-8601 time between 1970 and 2999 once in UTC (without a zone: UTC), as UTC."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("a DateTime is an ISO-8601 string such as 2026-11-23T10:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("not an ISO-8601 date-time such as 2026-11-23T10:00:00Z") from None
    try:
        return check_time(parsed, "time")
    except ValidationFailed:
        raise ValueError("times must lie between 1970 and 2999 (UTC)") from None


# Times leave in UTC with a Z, exactly as in the event envelope (DESIGN §3).
UTCDateTime = strawberry.scalar(
    name="DateTime",
    description="ISO-8601 date-time; output in UTC: 2026-11-23T10:00:00.000000Z",
    serialize=lambda value: format_time(value if value.tzinfo else value.replace(tzinfo=UTC)),
    parse_value=_parse_time,
)
