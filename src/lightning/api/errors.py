"""Translate errors once, at the edge: every GraphQL error leaves with ``extensions.code``."""

from __future__ import annotations

import logging
import uuid

from graphql.error import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from ..domain.errors import LightningError
from ..store.outages import is_transient

log = logging.getLogger(__name__)


def _code_and_message(error: GraphQLError, request_id: str) -> tuple[str, str, dict[str, object]]:
    original = error.original_error
    existing = dict(error.extensions or {})
    if "code" in existing:
        return str(existing.pop("code")), error.message, existing
    if isinstance(original, LightningError):
        return original.code, original.message, dict(original.details)
    if isinstance(original, ValidationError):
        problems = [e["msg"] for e in original.errors(include_input=False)]
        return "BAD_USER_INPUT", "; ".join(problems), {}
    if original is not None and is_transient(original):
        log.warning("database unavailable: %s", original)
        return "UNAVAILABLE", "the database is unavailable; try again shortly", {}
    if isinstance(original, CannotGetOperationTypeError | InvalidOperationTypeError):
        return "BAD_USER_INPUT", error.message, {}
    if isinstance(original, RecursionError):
        return "BAD_USER_INPUT", "the document nests too deeply", {}
    if original is None or (
        not error.path and isinstance(original, ValueError | TypeError | GraphQLError)
    ):
        # Parse, validation and variable-coercion errors (a scalar refusing a value): raised
        # before any resolver ran, about the request itself — the client sent bad input.
        return "BAD_USER_INPUT", error.message, {}
    log.error("unexpected error, request id %s", request_id, exc_info=original)
    return "INTERNAL", f"Unexpected error (request id {request_id}).", {}


class ErrorCodes(MaskErrors):
    """Give every error a code from DESIGN §6; hide the text of unexpected exceptions."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        context = self.execution_context.context
        request_id = context.get("request_id") if isinstance(context, dict) else None
        if request_id is None:
            request_id = uuid.uuid4().hex
            if isinstance(context, dict):
                context["request_id"] = request_id  # one id for the request's errors
        code, message, details = _code_and_message(error, request_id)
        extensions: dict[str, object] = {"code": code}
        if details:
            extensions["details"] = details
        if code == "INTERNAL":
            extensions["requestId"] = request_id
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions=extensions,
        )
