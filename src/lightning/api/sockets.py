"""Who holds the open websockets, and for how long (DESIGN §6).

A credential holds at most ``per_credential`` sockets at once, counted across every server
process: each socket takes a lease in the database (``websocket_leases``) that its process
renews every 10 s and gives back when the socket ends; a killed process's leases stop counting
30 s later. Its validity is checked again for
every operation a socket starts, and a socket whose credential stops being valid is closed
(4403) within a second: at once when an event of its key (revoked, rotated, expired) passes the
live feed, at the moment it expires or its rotation grace ends, and every ``recheck_every``
seconds in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from ..services import Principal
from ..store.backends import Backend
from ..store.envelope import Envelope, format_time
from .context import run

log = logging.getLogger(__name__)

CLOSE_CREDENTIAL_ENDED = 4403  # graphql-transport-ws: Forbidden
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_TOO_SLOW = 4008

Authenticate = Callable[[str], Awaitable[Principal | None]]
Close = Callable[[int, str], Awaitable[None]]


class TooManySockets(Exception):
    pass


LEASE_SECONDS = 30.0
RENEW_EVERY = 10.0


class Leases:
    """The websockets of every server process, per credential, in the database."""

    def __init__(self, backend: Backend, *, lease: float = LEASE_SECONDS) -> None:
        self._backend = backend
        self._lease = timedelta(seconds=lease)
        self.server = uuid.uuid4().hex  # this process

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def take(self, actor: str, limit: int) -> str | None:
        """A lease for one more socket of ``actor``, or None when it holds ``limit``."""
        now = self._now()
        with self._backend.transaction() as tx:
            tx.serialise("websocket:" + actor)  # one taker per credential at a time
            row = tx.one(
                "SELECT count(*) AS held FROM websocket_leases WHERE actor = ? AND expires_at > ?",
                (actor, format_time(now)),
            )
            if row is not None and int(row["held"]) >= limit:
                return None
            lease = uuid.uuid4().hex
            tx.execute(
                "DELETE FROM websocket_leases WHERE actor = ? AND expires_at <= ?",
                (actor, format_time(now)),
            )
            tx.execute(
                "INSERT INTO websocket_leases (id, actor, server, expires_at) VALUES (?, ?, ?, ?)",
                (lease, actor, self.server, format_time(now + self._lease)),
            )
            return lease

    def renew(self, *leases: str) -> None:
        until = format_time(self._now() + self._lease)
        with self._backend.transaction() as tx:
            tx.commit_asynchronously()
            tx.execute_many(
                "UPDATE websocket_leases SET expires_at = ? WHERE id = ?",
                [(until, lease) for lease in leases],
            )

    def give_back(self, *leases: str) -> None:
        if leases:
            with self._backend.transaction() as tx:
                tx.commit_asynchronously()
                tx.execute_many("DELETE FROM websocket_leases WHERE id = ?", [(x,) for x in leases])


@dataclass(eq=False)
class Socket:
    """One open websocket: its credential, and how to end it."""

    token: str
    principal: Principal
    close: Close
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lease: str | None = None
    on_end: Callable[[Socket], None] | None = None  # gives its lease back
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
        self.closed = True  # it no longer counts, though its client may not let go at once
        if self.on_end is not None:
            self.on_end(self)
        with contextlib.suppress(Exception):  # already gone: nothing left to end
            await self.close(code, reason)


class Sockets:
    def __init__(
        self,
        authenticate: Authenticate,
        *,
        per_credential: int = 10,
        recheck_every: float = 30,
        leases: Leases | None = None,
    ) -> None:
        self._authenticate = authenticate
        self.per_credential = per_credential
        self.recheck_every = recheck_every
        self._leases = leases
        self._held: defaultdict[str, set[Socket]] = defaultdict(set)
        self._renewing: asyncio.Task[None] | None = None
        self._returning: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        if self._leases is not None:
            self._renewing = asyncio.create_task(self._renew(), name="websocket-leases")

    async def stop(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        if self._returning:
            await asyncio.gather(*self._returning, return_exceptions=True)
        leases = [s.lease for held in self._held.values() for s in held if s.lease]
        if self._leases is not None and leases:
            with contextlib.suppress(Exception):  # the store is down: they expire
                await run(self._leases.give_back, *leases)

    async def open(self, token: str, principal: Principal, close: Close) -> Socket:
        held = self._held[principal.actor]
        # One being closed (its client may take a while to let go) no longer counts.
        if sum(not s.closed for s in held) >= self.per_credential:
            raise TooManySockets(f"this credential already holds {self.per_credential} websockets")
        socket = Socket(token, principal, close, on_end=self._lease_ended)
        held.add(socket)  # counted here at once; in the store once the lease is taken
        try:
            if self._leases is not None:
                socket.lease = await run(self._leases.take, principal.actor, self.per_credential)
                if socket.closed:  # ended meanwhile
                    self._lease_ended(socket)
                elif socket.lease is None:
                    raise TooManySockets(
                        f"this credential already holds {self.per_credential} websockets"
                        " (across the servers)"
                    )
        except BaseException:
            self.release(socket)
            raise
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
        self._lease_ended(socket)

    def _lease_ended(self, socket: Socket) -> None:
        if socket.lease is not None and self._leases is not None:
            lease, socket.lease = socket.lease, None
            task = asyncio.get_running_loop().create_task(self._give_back(lease))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    async def _give_back(self, lease: str) -> None:
        assert self._leases is not None
        try:
            await run(self._leases.give_back, lease)
        except Exception as exc:  # the store is down: the lease expires by itself
            log.warning("could not give back a websocket lease: %s", exc)

    async def _renew(self) -> None:
        assert self._leases is not None
        while True:
            await asyncio.sleep(RENEW_EVERY)
            leases = [s.lease for held in self._held.values() for s in held if s.lease]
            if not leases:
                continue
            try:
                await run(self._leases.renew, *leases)
            except Exception as exc:
                log.warning("could not renew the websocket leases: %s", exc)

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
