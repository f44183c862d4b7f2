"""Hostile clients over HTTP (issue 11): every refusal is a GraphQL error with a code, arrives
before any resolver runs or anything is appended, and nothing answers HTTP 500 or INTERNAL.
Each case runs on both modes."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from .conftest import ADMIN, Server
from .test_graphql import GROK, REGISTER

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def post(server: Server, body: bytes | dict[str, Any], **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}/graphql",
        content=content,
        headers=AUTH | {"Content-Type": "application/json"} | headers,
        timeout=30,
    )


def refused(response: httpx.Response, code: str = "BAD_USER_INPUT") -> str:
    """The one error's message; the answer is GraphQL-shaped JSON with ``code``."""
    assert response.status_code < 500, response.text
    body = response.json()
    assert body.get("data") is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, body
    message: str = error["message"]
    return message


def head(shared_server: Server) -> int:
    events = shared_server.data("{ events(first: 500) { position } }")["events"]
    return max((e["position"] for e in events), default=0)


def aliases(field: str, n: int) -> str:
    return "{ " + " ".join(f"a{i}: {field}" for i in range(n)) + " }"


CASES: list[tuple[str, dict[str, Any] | bytes, str]] = [
    ("body not JSON", b"{", "BAD_USER_INPUT"),
    ("query not a string", {"query": 42}, "BAD_USER_INPUT"),
    (
        "variables not an object",
        {"query": "{ agents { pageInfo { hasNextPage } } }", "variables": [1]},
        "BAD_USER_INPUT",
    ),
    (
        "operationName not in document",
        {"query": "query A { agents { pageInfo { hasNextPage } } }", "operationName": "B"},
        "BAD_USER_INPUT",
    ),
    (
        "variables nested 1,000 deep",
        b'{"query": "{ agents { pageInfo { hasNextPage } } }", "variables": '
        + b'{"a":' * 1000
        + b"1"
        + b"}" * 1001,
        "BAD_USER_INPUT",
    ),
    (
        "variables nested 40 deep",
        {
            "query": "query($v: JSON) { __typename }",
            "variables": {"v": json.loads('{"a":' * 40 + "1" + "}" * 40)},
        },
        "BAD_USER_INPUT",
    ),
    (
        "1,000 aliases",
        {"query": aliases("agents(first: 500) { edges { node { id } } }", 1_000)},
        "BAD_USER_INPUT",
    ),
    ("31 aliases", {"query": aliases("__typename", 31)}, "BAD_USER_INPUT"),
    (
        "cost over 10,000",
        {"query": aliases("agents(first: 500) { edges { node { id name } } }", 10)},
        "BAD_USER_INPUT",
    ),
    ("first 501", {"query": "{ agents(first: 501) { edges { node { id } } } }"}, "BAD_USER_INPUT"),
    (
        "first 0 by variable",
        {"query": "query($n: Int!) { events(first: $n) { id } }", "variables": {"n": 0}},
        "BAD_USER_INPUT",
    ),
    ("depth 13", {"query": "{ " + "a { " * 12 + "b" + " }" * 13}, "BAD_USER_INPUT"),
    (
        "100,000 directives",
        {"query": "{ agents " + "@include(if: true) " * 100_000 + "{ pageInfo { hasNextPage } } }"},
        "BAD_USER_INPUT",
    ),
    (
        "11 mutations",
        {
            "query": "mutation { "
            + " ".join(
                f'r{i}: retireAgent(id: "00000000-0000-0000-0000-000000000000") {{ position }}'
                for i in range(11)
            )
            + " }"
        },
        "BAD_USER_INPUT",
    ),
    (
        "recursive introspection",
        {
            "query": "{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }"
        },
        "BAD_USER_INPUT",
    ),
    (
        "auditLog since the year 10000 in UTC",
        {"query": '{ auditLog(since: "9999-12-31T23:59:59-12:00") { edges { cursor } } }'},
        "BAD_USER_INPUT",
    ),
    (
        "auditLog until the year 0 in UTC",
        {"query": '{ auditLog(until: "0001-01-01T00:00:00+14:00") { edges { cursor } } }'},
        "BAD_USER_INPUT",
    ),
    (
        "stateAt asOf overflow",
        {
            "query": '{ stateAt(aggregateId: "00000000-0000-0000-0000-000000000000", asOf: "9999-12-31T23:59:59-12:00") { version } }'
        },
        "BAD_USER_INPUT",
    ),
    ("subscription over HTTP", {"query": "subscription { events { id } }"}, "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("case", "body", "code"), CASES, ids=[c[0] for c in CASES])
def test_abusive_requests_are_refused_with_a_code(
    shared_server: Server, case: str, body: dict[str, Any] | bytes, code: str
) -> None:
    before = head(shared_server)
    started = time.monotonic()
    refused(post(shared_server, body), code)
    assert time.monotonic() - started < 2, case
    assert head(shared_server) == before  # nothing appended


@pytest.mark.parametrize(
    "cursor",
    [f"{kind}:{'9' * 30}" for kind in ("agent", "api_key", "audit")] + ["agent:-1", "x", "\x00"],
)
def test_forged_cursors_are_refused(shared_server: Server, cursor: str) -> None:
    forged = base64.urlsafe_b64encode(cursor.encode()).decode()
    for query in (
        "query($c: String) { agents(after: $c) { edges { cursor } } }",
        "query($c: String) { apiKeys(after: $c) { edges { cursor } } }",
        "query($c: String) { auditLog(after: $c) { edges { cursor } } }",
        "query($c: String) { parkedEvents(after: $c) { position } }",
    ):
        refused(post(shared_server, {"query": query, "variables": {"c": forged}}))
        refused(post(shared_server, {"query": query, "variables": {"c": cursor}}))


def test_a_nul_byte_anywhere_in_an_agent_is_refused_before_anything_is_appended(
    shared_server: Server,
) -> None:
    before = head(shared_server)
    for field, value in [
        ("name", "a\x00b"),
        ("description", "d\x00"),
        ("systemPrompt", "p\x00"),
        ("tools", ["t\x00"]),
        ("tools", ["t" * 129]),
        ("tools", [f"t{i}" for i in range(65)]),
        ("systemPrompt", "p" * 32_769),
        ("description", "d" * 2_001),
    ]:
        message = refused(
            post(shared_server, {"query": REGISTER, "variables": {"input": GROK | {field: value}}})
        )
        assert "\x00" not in message
    revoke = 'mutation { revokeApiKey(id: "00000000-0000-0000-0000-000000000000", reason: "a\\u0000") { position } }'
    refused(post(shared_server, {"query": revoke}))
    assert head(shared_server) == before
    # Newlines and tabs are text in a description and a prompt.
    multiline = GROK | {"description": "one\n\ttwo", "systemPrompt": "line\nline"}
    shared_server.data(REGISTER, {"input": multiline})


def test_an_expiry_beyond_ten_years_is_refused_and_keys_stay_readable(
    shared_server: Server,
) -> None:
    issue = 'mutation($at: DateTime) { issueApiKey(input: {name: "far", role: "viewer", expiresAt: $at}) { secret } }'
    for at in ("9999-12-31T23:59:59-12:00", "2999-01-01T00:00:00Z", "2000-01-01T00:00:00Z"):
        refused(post(shared_server, {"query": issue, "variables": {"at": at}}))
    keys = shared_server.data("{ apiKeys(first: 500) { edges { node { name } } } }")["apiKeys"]
    assert "far" not in [edge["node"]["name"] for edge in keys["edges"]]


def test_ten_mutations_in_one_request_are_allowed(shared_server: Server) -> None:
    mutations = " ".join(
        f'r{i}: registerAgent(input: {{name: "m{i}", provider: "grok", model: "grok-beta"}}) {{ position }}'
        for i in range(10)
    )
    data = shared_server.data(f"mutation {{ {mutations} }}")
    assert len(data) == 10


def test_graphiqls_introspection_query_is_allowed(shared_server: Server) -> None:
    query = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    assert shared_server.data(query)["__schema"]["queryType"]["name"] == "Query"


def test_a_response_over_16_mib_is_refused(shared_server: Server) -> None:
    register = "mutation($i: RegisterAgentInput!) { registerAgent(input: $i) { position } }"
    for i in range(60):
        inputs = GROK | {"name": f"big{i}", "systemPrompt": "p" * 32_000}
        shared_server.data(register, {"i": inputs})
    query = aliases("events(first: 490) { data }", 20)  # cost 9,820: within the limit
    message = refused(post(shared_server, {"query": query}))
    assert "16 MiB" in message


def test_401_is_graphql_shaped(shared_server: Server) -> None:
    response = post(
        shared_server, {"query": "{ agents { edges { cursor } } }"}, Authorization="Bearer nope"
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    refused(response, "UNAUTHENTICATED")


def test_null_variables_are_no_variables(shared_server: Server) -> None:
    response = post(shared_server, {"query": "{ projections { name } }", "variables": None})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    response = httpx.get(
        f"{shared_server.url}/graphql",
        params={"query": "{ projections { name } }", "variables": "null"},
        headers=AUTH,
    )
    assert response.status_code == 200 and "errors" not in response.json(), response.text


def test_events_of_one_aggregate_page_with_after(shared_server: Server) -> None:
    agent = shared_server.data(REGISTER, {"input": GROK | {"name": "paged"}})["registerAgent"]
    agent_id = agent["agent"]["id"]
    for temperature in (0.1, 0.2, 0.3):
        shared_server.data(
            "mutation($id: ID!, $t: Float!) { reconfigureAgent(input: {id: $id, temperature: $t})"
            " { position } }",
            {"id": agent_id, "t": temperature},
        )
    query = 'query($id: ID!, $after: Int!) { events(aggregateId: $id, first: 2, after: $after, types: ["agent.reconfigured"]) { position type } }'
    first = shared_server.data(query, {"id": agent_id, "after": 0})["events"]
    assert [e["type"] for e in first] == ["agent.reconfigured"] * 2
    rest = shared_server.data(query, {"id": agent_id, "after": first[-1]["position"]})["events"]
    assert len(rest) == 1 and rest[0]["position"] > first[-1]["position"]
