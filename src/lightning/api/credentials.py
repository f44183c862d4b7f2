"""Who a bearer token stands for, without replaying its key's events on every request.

An API-key secret names its key, so authenticating it is one read of that key's stream: the
state its events leave it in, against which the secret's hash and the time are checked. That
state is kept in this process for at most ``ttl`` seconds (0.75 by default) after the read
that produced it began, and dropped at once when the live feed passes any event of that key;
a read that began before such an event never enters the cache. So a revocation, a rotation's
end or an expiry is in effect within 1 s in every server process — each follows the store
through its own feed, and none relies on another's memory — and usually as soon as the feed
sees it (a few milliseconds). What is checked against the clock (expiry, the end of a rotation's
grace) is checked at every request, against the cached state.

A hit costs no store read and no thread; a miss costs one read in a worker thread, shared by
the requests that miss on the same key meanwhile. The admin secret is compared in constant time
and never read from anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from ..domain import api_keys
from ..services import Principal
from ..services.api_keys import (
    ADMIN_SECRET_ACTOR,
    ApiKeyService,
    hash_secret,
    key_id_of,
    principal_of,
)
from ..services.common import utc_now
from ..store.envelope import Envelope
from .context import run

ADMIN = Principal(actor=ADMIN_SECRET_ACTOR, role="admin")


@dataclass(frozen=True)
class _Held:
    state: api_keys.ApiKey | None
    read_at: float  # when the read that produced it began (monotonic)


class Credentials:
    def __init__(
        self,
        keys: ApiKeyService,
        *,
        ttl: float = 0.75,
        entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self.ttl = ttl
        self._entries = entries
        self._clock = clock
        self._held: OrderedDict[UUID, _Held] = OrderedDict()
        self._reading: dict[UUID, asyncio.Future[_Held]] = {}
        self._epoch = 0  # counts the key events the feed passed: a read across one is not kept
        self.reads = 0  # store reads made (for tests and metrics)

    def __len__(self) -> int:
        return len(self._held)

    async def authenticate(self, token: str | None) -> Principal | None:
        if token is None:
            return None
        if self._keys.is_admin_secret(token):
            return ADMIN
        key_id = key_id_of(token)
        if key_id is None:
            return None
        held = await self._state(key_id)
        return principal_of(key_id, held.state, hash_secret(token), utc_now())

    async def _state(self, key_id: UUID) -> _Held:
        held = self._held.get(key_id)
        if held is not None and self._clock() - held.read_at < self.ttl:
            self._held.move_to_end(key_id)
            return held
        pending = self._reading.get(key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Held] = asyncio.get_running_loop().create_future()
        self._reading[key_id] = future
        epoch, began = self._epoch, self._clock()
        try:
            self.reads += 1
            state = await run(self._keys.key_state, key_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, get it too
            raise
        finally:
            self._reading.pop(key_id, None)
        held = _Held(state, began)
        if epoch == self._epoch and self.ttl > 0:
            self._held[key_id] = held
            self._held.move_to_end(key_id)
            while len(self._held) > self._entries:
                self._held.popitem(last=False)
        future.set_result(held)
        return held

    def observe(self, envelope: Envelope) -> None:
        """For the live feed: any event of an API key drops what is known of that key."""
        if envelope.aggregate_type == "api_key":
            self.forget(envelope.aggregate_id)

    def forget(self, key_id: UUID) -> None:
        self._epoch += 1
        self._held.pop(key_id, None)
