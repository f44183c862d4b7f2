"""Live subscriptions over graphql-transport-ws, as any off-the-shelf client speaks it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import ADMIN, Server
from .test_graphql import GROK, REGISTER

SUBSCRIBE = 'subscription($after: Int) { events(types: ["agent.*"], after: $after) { type position aggregateId data } }'


async def connect(server: Server, payload: dict[str, Any] | None) -> Any:
    ws = await websockets.connect(
        server.url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    return ws


async def next_message(ws: Any) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if message["type"] not in {"ping", "pong"}:
            return message


async def test_subscription_streams_new_events_in_order(server: Server) -> None:
    ws = await connect(server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    await asyncio.sleep(0.3)
    registered = await asyncio.to_thread(server.data, REGISTER, {"input": GROK})
    await asyncio.to_thread(server.data, REGISTER, {"input": GROK | {"name": "second"}})
    first = await next_message(ws)
    second = await next_message(ws)
    assert first["type"] == "next" and first["id"] == "1"
    events = [first["payload"]["data"]["events"], second["payload"]["data"]["events"]]
    assert [e["type"] for e in events] == ["agent.registered", "agent.registered"]
    assert events[0]["position"] == registered["registerAgent"]["position"]
    assert events[0]["position"] < events[1]["position"]
    await ws.close()


async def test_subscription_with_after_replays_then_goes_live(server: Server) -> None:
    await asyncio.to_thread(server.data, REGISTER, {"input": GROK})
    ws = await connect(server, {"authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    await ws.send(
        json.dumps(
            {
                "id": "a",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"after": 0}},
            }
        )
    )
    replayed = await next_message(ws)
    assert replayed["payload"]["data"]["events"]["type"] == "agent.registered"
    await asyncio.to_thread(server.data, REGISTER, {"input": GROK | {"name": "live"}})
    live = await next_message(ws)
    assert live["payload"]["data"]["events"]["data"]["name"] == "live"
    await ws.close()


async def test_subscription_without_token_is_rejected(sqlite_server: Server) -> None:
    ws = await connect(sqlite_server, {})
    with pytest.raises(ConnectionClosed) as closed:
        await next_message(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_legacy_graphql_ws_protocol_is_not_offered(sqlite_server: Server) -> None:
    url = sqlite_server.url.replace("http", "ws") + "/graphql"
    try:
        ws = await websockets.connect(url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
    except InvalidStatus:
        return  # refused at the handshake
    with pytest.raises(ConnectionClosed):
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        await next_message(ws)


async def test_a_revoked_key_stops_receiving_events(sqlite_server: Server) -> None:
    issued = await asyncio.to_thread(
        sqlite_server.data,
        'mutation { issueApiKey(input: {name: "watcher", role: "viewer"}) { secret apiKey { id } } }',
    )
    secret, key_id = issued["issueApiKey"]["secret"], issued["issueApiKey"]["apiKey"]["id"]
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {secret}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "r", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(sqlite_server.data, REGISTER, {"input": GROK})
    assert (await next_message(ws))["type"] == "next"
    await asyncio.to_thread(
        sqlite_server.data,
        "mutation($id: ID!) { revokeApiKey(id: $id) { position } }",
        {"id": key_id},
    )
    await asyncio.sleep(5.5)
    await asyncio.to_thread(sqlite_server.data, REGISTER, {"input": GROK | {"name": "unseen"}})
    message = await next_message(ws)
    assert message["payload"]["data"] is None, message
    assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await next_message(ws))["type"] == "complete"
    await ws.close()
