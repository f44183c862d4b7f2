"""The HTTP edge of GraphQL: what a request may be before GraphQL runs, and answers in
GraphQL's shape for everything refused there — a body that is not JSON or nests too deeply, not
a GraphQL request, an operationName the document lacks, HTTP 401, a body over 4 MiB, a fault
(INTERNAL with a request id) — so no input gets HTTP 500 or plain text (DESIGN §6)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import timedelta
from typing import Any, ClassVar

from cross_web import HTTPException as GraphQLHTTPException
from litestar import MediaType, Request, Response
from litestar.background_tasks import BackgroundTasks
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.types import Dependencies
from strawberry.http import GraphQLRequestData
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.litestar import make_graphql_controller
from strawberry.litestar.controller import _context_getter_http, _context_getter_ws
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from .apq import PersistedQueries, PersistedQueryError, requested_hash
from .context import RESPONSE_MAX_BYTES
from .limits import Limits, nesting
from .schema import build_schema
from .websocket import TransportWS

log = logging.getLogger(__name__)
REQUEST_MAX_BYTES = 4 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED"}


def error_body(message: str, code: str, **extensions: object) -> dict[str, object]:
    """An answer in GraphQL's shape, for what goes wrong before GraphQL runs (DESIGN §6)."""
    return {
        "data": None,
        "errors": [{"message": message, "extensions": {"code": code, **extensions}}],
    }


def code_for(status: int) -> str:
    if status >= 500:
        return "UNAVAILABLE" if status == 503 else "INTERNAL"
    return _CODES.get(status, "BAD_USER_INPUT")


def request_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's ``X-Request-Id`` when it is a plain token, else a fresh one."""
    given = connection.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


class TooDeep(json.JSONDecodeError):
    """JSON nested deeper, or holding more, than this server reads (a websocket closes with
    4400 for it)."""

    def __init__(self, message: str = "the JSON nests too deeply") -> None:
        super().__init__(message, "", 0)
        self.message = message


def _not_json(constant: str) -> object:
    """``NaN``, ``Infinity``: Python reads them, JSON has no such numbers."""
    raise json.JSONDecodeError(f"{constant} is not a JSON number", constant, 0)


class GraphQLEdge(AsyncBaseHTTPView[Any, Any, Any, Any, Any, Any, Any]):
    """What Lightning's GraphQL controller adds to strawberry's (see the module docstring)."""

    limits: Limits = Limits()

    def decode_json(self, data: str | bytes) -> object:
        """JSON (an HTTP body or a websocket message) nests at most 32 levels below
        ``variables`` (DESIGN §6); deeper is not JSON this server reads."""
        raw = data.encode() if isinstance(data, str) else data
        if raw.count(b",") >= self.limits.json_values:
            raise TooDeep(f"the JSON holds more than {self.limits.json_values:,} values")
        try:
            decoded = json.loads(data, parse_constant=_not_json)
        except RecursionError:
            raise TooDeep() from None
        if nesting(decoded, self.limits.variables_depth + 2):
            raise TooDeep()
        return decoded

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return self.decode_json(data)
        except TooDeep as exc:
            raise GraphQLHTTPException(400, exc.message) from None
        except json.JSONDecodeError:
            raise GraphQLHTTPException(400, "the body is not JSON") from None

    async def parse_http_body(self, request: Any) -> Any:
        try:
            return await super().parse_http_body(request)
        except (AttributeError, TypeError):  # valid JSON, but not an object
            raise GraphQLHTTPException(400, "the body must be a JSON object with a query") from None

    def encode_json(self, data: object) -> bytes:
        encoded = json.dumps(data, separators=(",", ":")).encode()
        if len(encoded) <= RESPONSE_MAX_BYTES:
            return encoded
        message = "the response would be larger than 16 MiB; ask for less"
        if isinstance(data, dict) and "id" in data and "type" in data:  # a websocket message
            error = {"message": message, "extensions": {"code": "BAD_USER_INPUT"}}
            data = {"id": data["id"], "type": "error", "payload": [error]}
        else:
            data = error_body(message, "BAD_USER_INPUT")
        return json.dumps(data).encode()

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Not for a persisted query by GET (it has ``extensions`` and no ``query``)."""
        return "extensions" not in request.query_params and bool(
            super().should_render_graphql_ide(request)
        )

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Automatic persisted queries (``apq``): the document a hash names, else an error in
        GraphQL's shape (HTTP 200, as Apollo's clients expect)."""
        try:
            sha = requested_hash(request_data.extensions)
            if sha is not None:
                queries: PersistedQueries = request.app.state.persisted_queries
                request_data.query = await queries.document(sha, request_data.query)
        except PersistedQueryError as exc:
            return ExecutionResult(data=None, errors=[exc.error])
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def execute_request(
        self, request: Request[Any, Any, Any], context: Any, root_value: Any
    ) -> Response[Any]:
        """What strawberry answers in plain text (a body that is not a GraphQL request,
        an operationName the document does not hold) is answered in GraphQL's shape."""
        try:
            response: Response[Any] = await self.run(
                request, context=context, root_value=root_value
            )
        except GraphQLHTTPException as exc:
            return Response(
                error_body(exc.reason, code_for(exc.status_code)),
                status_code=exc.status_code,
                media_type=MediaType.JSON,
            )
        return response


async def _root_value(custom_context: Any) -> None:
    return None


def _response(root_value: Any) -> Response[Any]:
    return Response({}, background=BackgroundTasks([]))


def graphql_controller(limits: Limits, context_getter: Any) -> type:
    base = make_graphql_controller(
        build_schema(limits),
        path="/graphql",
        context_getter=context_getter,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        keep_alive=True,
        keep_alive_interval=15,
        connection_init_wait_timeout=timedelta(seconds=10),
        max_subscriptions_per_connection=None,  # TransportWS counts, and answers with a code
    )

    class GraphQLController(GraphQLEdge, base):  # type: ignore[misc,valid-type]
        graphql_transport_ws_handler_class = TransportWS
        # strawberry's own make the response in a worker thread and resolve three at once in
        # a task group, per request: chained, each is one await on the loop.
        dependencies: ClassVar[Dependencies] = {
            "custom_context": Provide(context_getter),
            "root_value": Provide(_root_value),
            "response": Provide(_response, sync_to_thread=False),
            "context": Provide(_context_getter_http),
            "context_ws": Provide(_context_getter_ws),
        }

    GraphQLController.limits = limits
    return GraphQLController


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own refusals (401, a body over 4 MiB, a wrong method) in GraphQL's shape."""
    return Response(
        error_body(str(exc.detail), code_for(exc.status_code)),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=MediaType.JSON,
    )


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A fault: logged with a request id, answered INTERNAL with that id, never its text."""
    rid = request_id(request)
    log.error("unexpected error, request id %s", rid, exc_info=exc)
    return Response(
        error_body(f"Unexpected error (request id {rid}).", "INTERNAL", requestId=rid),
        status_code=500,
        media_type=MediaType.JSON,
    )
