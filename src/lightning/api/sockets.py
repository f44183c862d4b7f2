"""Who holds the open websockets, and for how long (DESIGN §6).

A credential holds at most ``per_credential`` sockets at once. Its validity is checked again for
every operation a socket starts, and a socket whose credential stops being valid is closed
(4403) within a second: at once when an event of its key (revoked, rotated, expired) passes the
live feed, at the moment it expires or its rotation grace ends, and every ``recheck_every``
seconds in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from ..services import Principal
from ..store.envelope import Envelope

log = logging.getLogger(__name__)

CLOSE_CREDENTIAL_ENDED = 4403  # graphql-transport-ws: Forbidden
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TOO_SLOW = 4008

Authenticate = Callable[[str], Awaitable[Principal | None]]
Close = Callable[[int, str], Awaitable[None]]


class TooManySockets(Exception):
    pass


@dataclass(eq=False)
class Socket:
    """One open websocket: its credential, and how to end it."""

    token: str
    principal: Principal
    close: Close
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    watch: asyncio.Task[None] | None = None
    ending: asyncio.Task[None] | None = None

    def too_slow(self) -> None:
        """A subscription on this socket fell too far behind (the client stopped reading):
        end the socket, which frees everything it holds. One log line, no traceback."""
        if self.closed or self.ending is not None:
            return
        log.warning(
            "closing a websocket of %s (%d): a subscription fell too far behind",
            self.principal.actor,
            CLOSE_TOO_SLOW,
        )
        reason = "subscriber too slow: reconnect and resubscribe with after"
        self.ending = asyncio.get_running_loop().create_task(self.end(CLOSE_TOO_SLOW, reason))

    async def end(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # already gone: nothing left to end
            await self.close(code, reason)


class Sockets:
    def __init__(
        self, authenticate: Authenticate, *, per_credential: int = 10, recheck_every: float = 30
    ) -> None:
        self._authenticate = authenticate
        self.per_credential = per_credential
        self.recheck_every = recheck_every
        self._held: defaultdict[str, set[Socket]] = defaultdict(set)

    def open(self, token: str, principal: Principal, close: Close) -> Socket:
        held = self._held[principal.actor]
        # One being closed (its client may take a while to let go) no longer counts.
        if sum(not s.closed for s in held) >= self.per_credential:
            raise TooManySockets(f"this credential already holds {self.per_credential} websockets")
        socket = Socket(token, principal, close)
        held.add(socket)
        socket.watch = asyncio.create_task(self._watch(socket), name="websocket-credential")
        return socket

    def release(self, socket: Socket) -> None:
        socket.closed = True
        held = self._held.get(socket.principal.actor)
        if held is not None:
            held.discard(socket)
            if not held:
                del self._held[socket.principal.actor]
        if socket.watch is not None and socket.watch is not asyncio.current_task():
            socket.watch.cancel()  # not awaited: the caller's own cancellation stays its own

    def held(self, actor: str) -> int:
        return sum(not s.closed for s in self._held.get(actor, ()))

    async def check(self, socket: Socket) -> Principal | None:
        """The socket's principal as of now; when its credential no longer authenticates,
        the socket is closed and None returned."""
        if socket.closed:
            return None
        principal = await self._authenticate(socket.token)
        if principal is None:
            log.info("closing a websocket of %s: its credential ended", socket.principal.actor)
            await socket.end(CLOSE_CREDENTIAL_ENDED, "the credential is no longer valid")
            return None
        socket.principal = principal
        return principal

    def observe(self, envelope: Envelope) -> None:
        """For the live feed: an event of an API key makes its sockets check again."""
        if envelope.aggregate_type == "api_key":
            self.key_changed(envelope.aggregate_id)

    def key_changed(self, key_id: UUID) -> None:
        for socket in self._held.get(f"key:{key_id}", ()):
            socket.changed.set()

    async def _watch(self, socket: Socket) -> None:
        while not socket.closed:
            wait = self.recheck_every
            until = socket.principal.valid_until
            if until is not None:
                wait = max(0.0, min(wait, (until - datetime.now(UTC)).total_seconds() + 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(socket.changed.wait(), wait)
            socket.changed.clear()
            try:
                if await self.check(socket) is None:
                    return
            except Exception as exc:  # the store is down: keep the socket, check again soon
                log.warning("could not check a websocket's credential: %s", exc)
                await asyncio.sleep(1)
