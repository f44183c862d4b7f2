"""Live subscriptions over graphql-transport-ws, as any off-the-shelf client speaks it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import ADMIN, Server, base_env, start_server
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


async def issue_key(server: Server, role: str = "viewer", **extra: str) -> tuple[str, str]:
    fields = ", ".join(
        ['name: "ws"', f'role: "{role}"'] + [f'{k}: "{v}"' for k, v in extra.items()]
    )
    issued = await asyncio.to_thread(
        server.data,
        f"mutation {{ issueApiKey(input: {{{fields}}}) {{ secret apiKey {{ id }} }} }}",
    )
    return issued["issueApiKey"]["secret"], issued["issueApiKey"]["apiKey"]["id"]


async def closed_with(ws: Any, within: float = 15) -> int:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


async def test_a_revoked_keys_open_socket_is_closed_within_a_second(server: Server) -> None:
    secret, key_id = await issue_key(server)
    ws = await connect(server, {"Authorization": f"Bearer {secret}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "r", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.data, REGISTER, {"input": GROK})
    assert (await next_message(ws))["type"] == "next"
    await asyncio.to_thread(
        server.data, "mutation($id: ID!) { revokeApiKey(id: $id) { position } }", {"id": key_id}
    )
    revoked = time.monotonic()
    assert await closed_with(ws) == 4403
    assert time.monotonic() - revoked < 1.0


async def test_a_key_that_expires_ends_its_socket_when_it_expires(sqlite_server: Server) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=3)
    secret, _ = await issue_key(sqlite_server, expiresAt=expires.isoformat())
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {secret}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    assert await closed_with(ws) == 4403
    assert datetime.now(UTC) - expires < timedelta(seconds=1)


async def test_every_operation_on_a_socket_checks_the_credential_again(
    sqlite_server: Server,
) -> None:
    """An operation sent in the moment between revocation and the socket closing is refused:
    the operation itself re-authenticates (here: revoked by the time it arrives)."""
    secret, key_id = await issue_key(sqlite_server, role="operator")
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {secret}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    revoke = "mutation($id: ID!) { revokeApiKey(id: $id) { position } }"
    await asyncio.to_thread(sqlite_server.data, revoke, {"id": key_id})
    mutation = {"query": REGISTER, "variables": {"input": GROK | {"name": "late"}}}
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": mutation}))
    assert await closed_with(ws) == 4403
    agents = await asyncio.to_thread(sqlite_server.data, "{ agents { edges { node { name } } } }")
    assert agents["agents"]["edges"] == []


async def test_one_credential_holds_at_most_ten_sockets(sqlite_server: Server) -> None:
    secret, _ = await issue_key(sqlite_server)
    auth = {"Authorization": f"Bearer {secret}"}
    sockets = [await connect(sqlite_server, auth) for _ in range(10)]
    for ws in sockets:
        assert (await next_message(ws))["type"] == "connection_ack"
    eleventh = await connect(sqlite_server, auth)
    assert await closed_with(eleventh) == 4429
    other = await connect(sqlite_server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(other))["type"] == "connection_ack"  # others are not affected
    await sockets.pop().close()
    await asyncio.sleep(0.2)
    again = await connect(sqlite_server, auth)
    assert (await next_message(again))["type"] == "connection_ack"
    for ws in [*sockets, other, again]:
        await ws.close()


async def test_one_connection_runs_at_most_twenty_subscriptions(sqlite_server: Server) -> None:
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    for i in range(21):
        payload = {"query": SUBSCRIBE}
        await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
    refused = await next_message(ws)
    assert refused["type"] == "error" and refused["id"] == "20"
    assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
    await ws.send(json.dumps({"id": "0", "type": "complete"}))
    await asyncio.sleep(0.1)
    await ws.send(json.dumps({"id": "again", "type": "subscribe", "payload": {"query": SUBSCRIBE}}))
    await asyncio.to_thread(sqlite_server.data, REGISTER, {"input": GROK})
    ids = {(await next_message(ws))["id"] for _ in range(20)}
    assert "again" in ids and "0" not in ids
    await ws.close()


@pytest.mark.parametrize(
    "message",
    [
        [],
        {"type": 42},
        {"type": "subscribe", "id": "x", "payload": {"query": 42}},
        {"type": "subscribe", "id": "x", "payload": "{ agents { edges { node { id } } } }"},
        {"type": "subscribe", "id": "x" * 1000, "payload": {"query": SUBSCRIBE}},
        {"type": "subscribe", "id": "x", "payload": {"query": SUBSCRIBE, "variables": [1]}},
        {"type": "subscribe", "id": "x", "payload": {"query": SUBSCRIBE, "operationName": False}},
        {
            "type": "subscribe",
            "id": "x",
            "payload": {"query": SUBSCRIBE, "variables": json.loads('{"a":' * 50 + "1" + "}" * 50)},
        },
        None,
    ],
)
async def test_a_malformed_message_closes_the_socket_with_4400(
    sqlite_server: Server, message: Any
) -> None:
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    await ws.send(json.dumps(message))
    assert await closed_with(ws) == 4400


async def test_an_operation_name_the_document_lacks_is_bad_input(sqlite_server: Server) -> None:
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    payload = {"query": SUBSCRIBE, "operationName": "Missing"}
    await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": payload}))
    with contextlib.suppress(ConnectionClosed):
        message = await next_message(ws)
        assert message["type"] in {"next", "error"}, message
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", message
    await ws.close()
    log = (sqlite_server.workdir / "serve.log").read_text()
    assert "Traceback" not in log


async def test_bad_subscription_arguments_are_refused_with_a_code(sqlite_server: Server) -> None:
    ws = await connect(sqlite_server, {"Authorization": f"Bearer {ADMIN}"})
    assert (await next_message(ws))["type"] == "connection_ack"
    for i, variables in enumerate([{"after": 10**6}, {"after": -1}]):
        payload = {"query": SUBSCRIBE, "variables": variables}
        await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
        message = await next_message(ws)
        assert message["type"] in {"next", "error"}, message
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", message
        if message["type"] == "next":
            assert (await next_message(ws)) == {"id": str(i), "type": "complete"}
    await ws.close()


def raw_socket(server: Server, token: str, query: str) -> socket.socket:
    """A graphql-transport-ws client that subscribes and then reads nothing: a plain socket
    with a small receive buffer, so the server's sends back up at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /graphql HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    sock.sendall(client_frame(init))
    assert b"connection_ack" in sock.recv(4096)
    sock.sendall(client_frame({"id": "s", "type": "subscribe", "payload": {"query": query}}))
    return sock


def client_frame(message: object) -> bytes:
    data = json.dumps(message).encode()
    mask = os.urandom(4)
    size = (
        bytes([0x80 | len(data)])
        if len(data) < 126
        else bytes([0xFE]) + len(data).to_bytes(2, "big")
    )
    return b"\x81" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_a_client_that_stops_reading_is_disconnected_with_4008(tmp_path: Path) -> None:
    env = base_env(f"sqlite:///{tmp_path}/slow.db") | {"LIGHTNING_SUBSCRIPTION_QUEUE": "20"}
    with contextlib.contextmanager(start_server)(tmp_path, env) as server:
        secret, _ = await issue_key(server)
        held = [await connect(server, {"Authorization": f"Bearer {secret}"}) for _ in range(9)]
        for ws in held:
            assert (await next_message(ws))["type"] == "connection_ack"
        slow = raw_socket(server, secret, "subscription { events { type position data } }")
        await asyncio.sleep(0.3)
        register = (
            "mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { position } }"
        )
        log = server.workdir / "serve.log"
        for i in range(1_000):
            inputs = {"input": GROK | {"name": f"a{i}", "systemPrompt": "p" * 32_000}}
            await asyncio.to_thread(server.data, register, inputs)
            if "fell too far behind" in log.read_text():
                break
        await asyncio.sleep(0.5)
        # The socket's place is free again while the client still holds its end unread.
        tenth = await connect(server, {"Authorization": f"Bearer {secret}"})
        assert (await next_message(tenth))["type"] == "connection_ack"
        slow.settimeout(15)
        received = b""
        with contextlib.suppress(OSError), slow:
            while chunk := slow.recv(1 << 20):
                received += chunk
        assert re.search(rb"\x88[\x02-\x7d]\x0f\xa8", received[-200:]), received[-200:]  # 4008
        text = log.read_text()
        assert text.count("fell too far behind") == 1
        assert "Traceback" not in text
        for ws in [*held, tenth]:
            await ws.close()
