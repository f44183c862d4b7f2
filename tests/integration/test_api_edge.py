"""What the GraphQL server processes share through the store: the websockets each credential
holds (the per-credential cap across processes) and the persisted queries clients registered."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from lightning.api.apq import PersistedQueries, PersistedQueryError
from lightning.api.sockets import Leases, Sockets, TooManySockets
from lightning.bootstrap import Lightning
from lightning.services import Principal

KEY = Principal(actor="key:00000000-0000-0000-0000-000000000001", role="viewer")


async def _never(_: str) -> Principal | None:
    return KEY


async def _closed(code: int, reason: str) -> None:
    return None


def test_the_websocket_cap_holds_across_server_processes(lightning: Lightning) -> None:
    backend = lightning.store.backend

    async def scenario() -> None:
        first, second = (
            Sockets(_never, per_credential=2, leases=Leases(backend)) for _ in range(2)
        )
        a = await first.open("t", KEY, _closed)
        await second.open("t", KEY, _closed)
        for sockets in (first, second):
            with pytest.raises(TooManySockets):
                await sockets.open("t", KEY, _closed)
        first.release(a)
        await first.stop()  # its lease given back
        await second.open("t", KEY, _closed)  # the freed one, from the other process
        await second.stop()

    asyncio.run(scenario())


def test_a_killed_servers_leases_stop_counting(lightning: Lightning) -> None:
    backend = lightning.store.backend

    async def scenario() -> None:
        killed = Sockets(_never, per_credential=1, leases=Leases(backend, lease=0.2))
        await killed.open("t", KEY, _closed)  # never released: its process "dies"
        other = Sockets(_never, per_credential=1, leases=Leases(backend))
        with pytest.raises(TooManySockets):
            await other.open("t", KEY, _closed)
        await asyncio.sleep(0.3)
        await other.open("t", KEY, _closed)
        await other.stop()

    asyncio.run(scenario())


def test_a_persisted_query_registered_with_one_process_is_known_to_another(
    lightning: Lightning,
) -> None:
    document = "{ projections { name } }"
    sha = hashlib.sha256(document.encode()).hexdigest()

    async def scenario() -> None:
        one, other = (
            PersistedQueries(lightning.store.backend),
            PersistedQueries(lightning.store.backend),
        )
        with pytest.raises(PersistedQueryError) as missing:
            await other.document(sha, None)
        assert missing.value.error.extensions == {"code": "PERSISTED_QUERY_NOT_FOUND"}
        assert await one.document(sha, document) == document
        await one.close()  # its registration is stored
        assert await other.document(sha, None) == document
        with pytest.raises(PersistedQueryError) as mismatch:
            await other.document(sha, document + " ")
        assert mismatch.value.error.extensions == {"code": "BAD_USER_INPUT"}

    asyncio.run(scenario())
