"""The API's credential cache: a key is read from the store once, not for every request, and
what happens to the key is in effect at once in this process and within the cache's lifetime
everywhere."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from pydantic import SecretStr

from lightning.api.credentials import ADMIN, Credentials
from lightning.bootstrap import Lightning
from lightning.services import SYSTEM, Context

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def issue(app: Lightning) -> tuple[str, str]:
    result = app.api_keys.issue(Context(SYSTEM), name="ci", role="operator")
    assert result.secret is not None
    return str(result.key.id), result.secret


@SQLITE_ONLY
def test_a_key_is_read_once_then_served_from_memory(lightning: Lightning) -> None:
    _, secret = issue(lightning)
    clock = Clock()
    credentials = Credentials(lightning.api_keys, clock=clock)

    async def scenario() -> None:
        principals = await asyncio.gather(*(credentials.authenticate(secret) for _ in range(20)))
        assert {p.role for p in principals if p is not None} == {"operator"}
        assert credentials.reads == 1  # concurrent misses share one read
        assert await credentials.authenticate(secret + "x") is None  # a wrong secret, same key
        assert credentials.reads == 1
        clock.now += credentials.ttl  # its lifetime is over: read again
        assert await credentials.authenticate(secret) is not None
        assert credentials.reads == 2

    asyncio.run(scenario())


@SQLITE_ONLY
def test_an_event_of_the_key_drops_it(lightning: Lightning) -> None:
    key_id, secret = issue(lightning)
    credentials = Credentials(lightning.api_keys, clock=Clock())

    async def scenario() -> None:
        assert await credentials.authenticate(secret) is not None
        revoked = await asyncio.to_thread(lightning.api_keys.revoke, Context(SYSTEM), UUID(key_id))
        cached = await credentials.authenticate(secret)
        assert cached is not None  # the cache has not seen it yet (within its lifetime)
        (event,) = lightning.store.read(revoked.position - 1, 1)
        credentials.observe(event)  # what the live feed does
        assert await credentials.authenticate(secret) is None

    asyncio.run(scenario())


@SQLITE_ONLY
def test_a_read_across_an_event_of_a_key_is_not_kept(lightning: Lightning) -> None:
    key_id, secret = issue(lightning)
    credentials = Credentials(lightning.api_keys, clock=Clock())

    async def scenario() -> None:
        reading = asyncio.create_task(credentials.authenticate(secret))
        await asyncio.sleep(0)  # the read is under way in its thread
        credentials.forget(UUID(key_id))
        assert await reading is not None
        assert len(credentials) == 0  # begun before the event: not kept

    asyncio.run(scenario())


@SQLITE_ONLY
def test_the_admin_secret_and_malformed_tokens_read_nothing(lightning: Lightning) -> None:
    admin = Lightning.open(
        lightning.settings.model_copy(update={"admin_secret": SecretStr("s3cret")})
    )
    try:
        credentials = Credentials(admin.api_keys, clock=Clock())

        async def scenario() -> None:
            assert await credentials.authenticate("s3cret") is ADMIN
            assert await credentials.authenticate("s3cre") is None
            assert await credentials.authenticate("lk_nothex_x") is None
            assert await credentials.authenticate(None) is None
            assert credentials.reads == 0

        asyncio.run(scenario())
    finally:
        admin.close()
