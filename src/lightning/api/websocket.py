"""graphql-transport-ws as Lightning speaks it (DESIGN §6): strawberry's handler, with the
credential taken at ``connection_init`` and checked again for every operation, at most
``LIGHTNING_WEBSOCKET_OPERATIONS`` (20) operations at once per socket and
``LIGHTNING_WEBSOCKETS_PER_CREDENTIAL`` (10) sockets per credential, and every message checked
for shape before it reaches the schema.

Close codes: 4400 a malformed message, 4401 an operation before ``connection_ack``, 4403 a
missing, wrong or no longer valid credential, 4429 a credential over its sockets (or a second
``connection_init``), 4008 a subscriber that stopped reading.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from .sockets import CLOSE_CREDENTIAL_ENDED, CLOSE_TOO_MANY_SOCKETS, Sockets, TooManySockets

log = logging.getLogger(__name__)

OPERATION_ID_MAX = 128


def bearer(value: object) -> str | None:
    if not isinstance(value, str) or len(value) > 4096:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _well_formed(message: Any) -> bool:
    payload = message.get("payload")
    return (
        isinstance(message.get("id"), str)
        and 0 < len(message["id"]) <= OPERATION_ID_MAX
        and isinstance(payload, dict)
        and isinstance(payload.get("query"), str)
        and isinstance(payload.get("variables") or {}, dict)
        and isinstance(payload.get("operationName"), str | None)
        and isinstance(payload.get("extensions") or {}, dict)
    )


class TransportWS(BaseGraphQLTransportWSHandler[dict[str, Any], Any]):
    @property
    def sockets(self) -> Sockets:
        sockets: Sockets = self.context["sockets"]
        return sockets

    async def handle_message(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.websocket.close(code=4400, reason="Invalid message")
            return
        await super().handle_message(cast(Message, message))

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            socket = self.context.get("socket")
            if socket is not None:
                self.sockets.release(socket)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Authenticate: the payload's ``Authorization`` (any case) or the upgrade request's
        header; then take one of the credential's sockets."""
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        header = next((v for k, v in payload.items() if k.lower() == "authorization"), None)
        if header is None:
            header = self.context["websocket"].headers.get("authorization")
        token = bearer(header)
        principal = await self.context["authenticate"](token) if token else None
        if token is None or principal is None:
            await self.websocket.close(code=CLOSE_CREDENTIAL_ENDED, reason="Forbidden")
            return
        try:
            socket = await self.sockets.open(token, principal, self.websocket.close)
        except TooManySockets as exc:
            await self.websocket.close(code=CLOSE_TOO_MANY_SOCKETS, reason=str(exc))
            return
        socket.changed.set()  # check once more: a revocation may have landed meanwhile
        self.context.update(socket=socket, principal=principal, connection_params=payload)
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not _well_formed(message):
            await self.websocket.close(code=4400, reason="Invalid subscribe message")
            return
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        try:
            principal = await self.sockets.check(self.context["socket"])
        except Exception as exc:  # the store is down: this operation cannot be checked
            log.warning("could not check a websocket's credential: %s", exc)
            await self._refuse(
                message["id"], "the database is unavailable; try again", "UNAVAILABLE"
            )
            return
        if principal is None:
            return  # the credential ended: the socket is closed
        self.context["principal"] = principal
        most = self.context["lightning"].settings.websocket_operations
        if len(self.operations) >= most and message["id"] not in self.operations:
            await self._refuse(
                message["id"],
                f"Subscription limit reached: at most {most} operations at once on one connection",
                "RATE_LIMITED",
            )
            return
        await super().handle_subscribe(message)

    async def _refuse(self, operation_id: str, message: str, code: str) -> None:
        error = GraphQLError(message, extensions={"code": code})
        await self.send_message({"id": operation_id, "type": "error", "payload": [error.formatted]})
