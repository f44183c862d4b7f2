"""The litestar application: GraphQL (HTTP and graphql-transport-ws), health, metrics, OpenAPI."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from cross_web import HTTPException as GraphQLHTTPException
from litestar import Litestar, MediaType, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.openapi import OpenAPIConfig
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from ..bootstrap import Lightning
from ..config import Settings
from ..services import Principal
from .context import RESPONSE_MAX_BYTES
from .feed import EventFeed
from .limits import Limits, nesting
from .metrics import metrics_response
from .schema import build_schema
from .sockets import Sockets
from .websocket import TransportWS, bearer

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


async def authenticate(app: Lightning, token: str | None) -> Principal | None:
    if token is None:
        return None
    return await anyio.to_thread.run_sync(app.api_keys.authenticate, token)


def _wants_ide(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return connection.scope["type"] == ScopeType.HTTP and (
        connection.scope.get("method") == "GET" and "query" not in connection.query_params
    )


async def graphql_context(request: ASGIConnection[Any, Any, Any, Any]) -> dict[str, object]:
    """Resolve the principal once per HTTP request (no or bad token: HTTP 401). A websocket is
    authenticated at connection_init and again for every operation (``websocket.TransportWS``)."""
    app: Lightning = request.app.state.lightning
    context: dict[str, object] = {
        "lightning": app,
        "feed": request.app.state.feed,
        "request_id": request_id(request),
    }
    if request.scope["type"] == ScopeType.WEBSOCKET:
        context["websocket"] = request
        context["sockets"] = request.app.state.sockets
        context["authenticate"] = functools.partial(authenticate, app)
        return context
    if _wants_ide(request):
        return context  # GraphiQL's page itself is public; its requests carry the token
    principal = await authenticate(app, bearer(request.headers.get("authorization")))
    if principal is None:
        raise NotAuthorizedException(
            "a valid bearer token is required (API key secret or LIGHTNING_ADMIN_SECRET)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    context["principal"] = principal
    return context


def _controller(limits: Limits) -> type:
    base = make_graphql_controller(
        build_schema(limits),
        path="/graphql",
        context_getter=graphql_context,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        keep_alive=True,
        keep_alive_interval=15,
        max_subscriptions_per_connection=None,  # TransportWS counts, and answers with a code
    )

    class GraphQLController(base):  # type: ignore[misc,valid-type]
        graphql_transport_ws_handler_class = TransportWS

        def decode_json(self, data: str | bytes) -> object:
            """JSON bodies nest at most 32 levels below ``variables`` (DESIGN §6)."""
            try:
                decoded = json.loads(data)
            except RecursionError:
                decoded = None
            if decoded is None or nesting(decoded, Limits().variables_depth + 2):
                raise GraphQLHTTPException(400, "the JSON body nests too deeply") from None
            return decoded

        def encode_json(self, data: object) -> bytes:
            encoded = json.dumps(data, separators=(",", ":")).encode()
            if len(encoded) > RESPONSE_MAX_BYTES:
                message = "the response would be larger than 16 MiB; ask for less"
                return json.dumps(error_body(message, "BAD_USER_INPUT")).encode()
            return encoded

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


@get("/health/live", media_type=MediaType.JSON, sync_to_thread=False)
def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", media_type=MediaType.JSON)
async def ready(state: State) -> Response[dict[str, object]]:
    """503 only when the store is unreachable. A handler that is retrying an event, has parked
    events or has no worker reporting makes it ``degraded`` (200): the server serves, and what
    is behind says so. (No error texts here: this endpoint needs no credential; GraphQL
    ``consumers`` and the CLI give them.)"""
    app: Lightning = state.lightning
    try:
        statuses = await anyio.to_thread.run_sync(app.consumers.statuses)
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        return Response(
            {"status": "unavailable", "error": "the database is unreachable"}, status_code=503
        )
    body: dict[str, object] = {
        "status": "ok" if all(s.healthy for s in statuses) else "degraded",
        "consumers": {
            s.name: {
                "kind": s.kind,
                "position": s.position,
                "lag": s.lag,
                "status": s.status,
                "parked": s.parked,
            }
            for s in statuses
        },
    }
    return Response(body, status_code=200)


@get("/metrics", media_type="text/plain; version=0.0.4; charset=utf-8")
async def metrics(state: State) -> Response[bytes]:
    return await anyio.to_thread.run_sync(metrics_response, state.lightning)


def create_app(settings: Settings | None = None, lightning: Lightning | None = None) -> Litestar:
    """Build the HTTP app. With ``lightning`` given, the caller owns it (tests); otherwise the
    app opens one from ``settings`` at start-up and, in embedded mode, runs the workers too."""
    configured = lightning.settings if lightning is not None else settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(litestar: Litestar) -> AsyncIterator[None]:
        owned = lightning is None
        if lightning is None:
            app = await anyio.to_thread.run_sync(Lightning.open, configured)
        else:
            app = lightning
        if owned and app.bus is not None:
            await anyio.to_thread.run_sync(app.start_embedded_workers)
        feed = EventFeed(app.store, queue_limit=app.settings.subscription_queue)
        sockets = Sockets(functools.partial(authenticate, app))
        feed.observe(sockets.observe)
        await feed.start()
        unsubscribe = app.bus.subscribe(feed.wake_threadsafe) if app.bus is not None else None
        litestar.state.lightning = app
        litestar.state.feed = feed
        litestar.state.sockets = sockets
        try:
            yield
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await feed.stop()
            if owned:
                await anyio.to_thread.run_sync(app.close)

    return Litestar(
        route_handlers=[_controller(Limits.of(configured)), live, ready, metrics],
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="Lightning", version="0.1.0", path="/schema"),
        exception_handlers={HTTPException: http_error, Exception: unexpected},
        request_max_body_size=REQUEST_MAX_BYTES,
        debug=False,
    )
