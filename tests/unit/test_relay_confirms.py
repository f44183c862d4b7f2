"""The relay's window of unconfirmed messages (``_Confirmations``): a relay that waits for room
because the broker is slow to confirm still stops at once when told to."""

from __future__ import annotations

import asyncio
from typing import Any

from lightning.bus.relay import _Confirmations


class Recorded:
    def __init__(self) -> None:
        self.positions: list[int] = []

    def confirmed(self, position: int) -> None:
        self.positions.append(position)

    async def close(self) -> None:
        pass


class Relay:
    published = 0


async def test_waiting_for_room_ends_when_the_relay_stops() -> None:
    recorded = Recorded()
    confirms = _Confirmations(Relay(), recorded, limit=10)  # type: ignore[arg-type]
    never: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
    confirms.add(10, 10, never)  # ten messages the broker never confirms
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(confirms.room(5, stop), timeout=2) is False
    await confirms.close()
    assert recorded.positions == []  # nothing unconfirmed is recorded


async def test_room_is_made_as_confirms_arrive_and_positions_follow_in_order() -> None:
    recorded = Recorded()
    confirms = _Confirmations(Relay(), recorded, limit=10)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    first: asyncio.Future[list[Any]] = loop.create_future()
    second: asyncio.Future[list[Any]] = loop.create_future()
    confirms.add(8, 8, first)
    confirms.add(10, 2, second)
    loop.call_later(0.02, second.set_result, [object()] * 2)  # out of order: waits for first
    loop.call_later(0.05, first.set_result, [object()] * 8)
    assert await asyncio.wait_for(confirms.room(5, asyncio.Event()), timeout=2) is True
    await asyncio.sleep(0.01)
    assert recorded.positions[:1] == [8]
    await confirms.close()
