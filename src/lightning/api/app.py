"""The litestar application: GraphQL (HTTP and graphql-transport-ws), health, metrics, OpenAPI."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from litestar import Litestar, MediaType, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.openapi import OpenAPIConfig

from ..bootstrap import Lightning
from ..config import Settings
from ..domain.workflows.document import json_schema
from .apq import PersistedQueries
from .credentials import Credentials
from .feed import EventFeed
from .http import REQUEST_MAX_BYTES, graphql_controller, http_error, request_id, unexpected
from .limits import Limits
from .metrics import metrics_response
from .sockets import Leases, Sockets
from .websocket import bearer

log = logging.getLogger(__name__)


def _wants_ide(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    params = connection.query_params
    return connection.scope["type"] == ScopeType.HTTP and (
        connection.scope.get("method") == "GET"
        and "query" not in params
        and "extensions" not in params  # a persisted query by GET
    )


async def graphql_context(request: ASGIConnection[Any, Any, Any, Any]) -> dict[str, object]:
    """Resolve the principal once per HTTP request (no or bad token: HTTP 401). A websocket is
    authenticated at connection_init and again for every operation (``websocket.TransportWS``)."""
    state = request.app.state
    credentials: Credentials = state.credentials
    context: dict[str, object] = {
        "lightning": state.lightning,
        "feed": state.feed,
        "credentials": credentials,
    }
    if "x-request-id" in request.headers:  # else one is made only if an error needs it
        context["request_id"] = request_id(request)
    if request.scope["type"] == ScopeType.WEBSOCKET:
        context["websocket"] = request
        context["sockets"] = state.sockets
        context["authenticate"] = credentials.authenticate
        return context
    if _wants_ide(request):
        return context  # GraphiQL's page itself is public; its requests carry the token
    if "idempotency-key" in request.headers:
        context["idempotency_key"] = request.headers["idempotency-key"]
    principal = await credentials.authenticate(bearer(request.headers.get("authorization")))
    if principal is None:
        raise NotAuthorizedException(
            "a valid bearer token is required (API key secret or LIGHTNING_ADMIN_SECRET)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    context["principal"] = principal
    return context


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


@get("/schemas/workflow.json", media_type=MediaType.JSON, sync_to_thread=False)
def workflow_schema() -> dict[str, object]:
    """The JSON Schema of the workflow document (exportWorkflow, importWorkflow, the CLI)."""
    return json_schema()


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
        credentials = Credentials(app.api_keys)
        sockets = Sockets(
            credentials.authenticate,
            per_credential=app.settings.websockets_per_credential,
            leases=Leases(app.store.backend),
        )
        feed.observe(credentials.observe)  # first: a socket then checks against the store
        feed.observe(sockets.observe)
        await feed.start()
        await sockets.start()
        unsubscribe = app.bus.subscribe(feed.wake_threadsafe) if app.bus is not None else None
        litestar.state.lightning = app
        litestar.state.feed = feed
        litestar.state.sockets = sockets
        litestar.state.credentials = credentials
        litestar.state.persisted_queries = queries = PersistedQueries(app.store.backend)
        try:
            yield
        finally:
            if unsubscribe is not None:
                unsubscribe()
            await sockets.stop()
            await queries.close()
            await feed.stop()
            if owned:
                await anyio.to_thread.run_sync(app.close)

    return Litestar(
        route_handlers=[
            graphql_controller(Limits.of(configured), graphql_context),
            live,
            ready,
            metrics,
            workflow_schema,
        ],
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="Lightning", version="0.1.0", path="/schema"),
        exception_handlers={HTTPException: http_error, Exception: unexpected},
        request_max_body_size=REQUEST_MAX_BYTES,
        debug=False,
    )
