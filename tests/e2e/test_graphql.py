"""GraphQL over HTTP against the real server: the README's journey, auth, bad input, paging."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx

from .conftest import ADMIN, Server

REGISTER = """
mutation($input: RegisterAgentInput!) {
  registerAgent(input: $input) { position agent { id name provider model configVersion status } }
}"""
GROK = {"name": "coder", "provider": "grok", "model": "grok-code-fast-1", "temperature": 0.2}


def register(server: Server, token: str = ADMIN, **overrides: object) -> dict[str, object]:
    result: dict[str, object] = server.data(REGISTER, {"input": GROK | overrides}, token)[
        "registerAgent"
    ]
    return result


def test_register_list_reconfigure_and_time_travel(server: Server) -> None:
    registered = register(server)
    agent = registered["agent"]
    assert isinstance(agent, dict)
    assert (
        agent["configVersion"] == 1
        and agent["status"] == "active"
        and agent["model"] == "grok-code-fast-1"
    )
    listed = server.data(
        "query($p: Int) { agents(consistentWith: $p) { edges { node { id name } } pageInfo { hasNextPage } } }",
        {"p": registered["position"]},
    )["agents"]
    assert [e["node"]["name"] for e in listed["edges"]] == ["coder"]

    before = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    reconf = server.data(
        'mutation($id: ID!) { reconfigureAgent(input: {id: $id, model: "grok-beta", temperature: 0.9})'
        " { position agent { configVersion model } } }",
        {"id": agent["id"]},
    )["reconfigureAgent"]
    assert reconf["agent"] == {"configVersion": 2, "model": "grok-beta"}

    old = server.data(
        "query($id: ID!, $t: DateTime) { agent(id: $id, asOf: $t) { configVersion model temperature } }",
        {"id": agent["id"], "t": before},
    )["agent"]
    assert old == {"configVersion": 1, "model": "grok-code-fast-1", "temperature": 0.2}
    now = server.data(
        "query($id: ID!, $p: Int) { agent(id: $id, consistentWith: $p) { configVersion model } }",
        {"id": agent["id"], "p": reconf["position"]},
    )["agent"]
    assert now == {"configVersion": 2, "model": "grok-beta"}

    history = server.data(
        "query($id: ID!) { history(aggregateId: $id) { position version type actor data } }",
        {"id": agent["id"]},
    )["history"]
    assert [h["type"] for h in history] == ["agent.registered", "agent.reconfigured"]
    assert history[1]["data"] == {"config_version": 2, "model": "grok-beta", "temperature": 0.9}
    state = server.data(
        "query($id: ID!) { stateAt(aggregateId: $id, version: 1) { version state } }",
        {"id": agent["id"]},
    )["stateAt"]
    assert state["version"] == 1 and state["state"]["config"]["model"] == "grok-code-fast-1"


def test_missing_or_invalid_token_is_http_401(server: Server) -> None:
    assert server.gql("{ agents { edges { node { id } } } }", token=None).status_code == 401
    assert server.gql("{ agents { edges { node { id } } } }", token="wrong").status_code == 401
    response = httpx.post(
        f"{server.url}/graphql",
        json={"query": "{ projections { name } }"},
        headers={"Authorization": f"Basic {ADMIN}"},
        timeout=10,
    )
    assert response.status_code == 401
    assert server.data("{ agents { edges { node { id } } } }", token=None if False else ADMIN)


def test_roles_are_enforced_per_field(server: Server) -> None:
    issue = "mutation($r: String!) { issueApiKey(input: {name: $r, role: $r}) { secret apiKey { id role } } }"
    viewer = server.data(issue, {"r": "viewer"})["issueApiKey"]["secret"]
    operator = server.data(issue, {"r": "operator"})["issueApiKey"]["secret"]

    assert server.error(REGISTER, {"input": GROK}, viewer)["extensions"]["code"] == "FORBIDDEN"
    assert server.data("{ agents { edges { node { id } } } }", token=viewer)
    registered = register(server, operator)
    assert registered["position"]
    assert server.error(issue, {"r": "admin"}, operator)["extensions"]["code"] == "FORBIDDEN"
    assert (
        server.error("{ apiKeys { edges { node { id } } } }", token=viewer)["extensions"]["code"]
        == "FORBIDDEN"
    )
    audit = server.data(
        "query($p: Int) { auditLog(first: 5, consistentWith: $p) { edges { node { type actor } } } }",
        {"p": registered["position"]},
    )["auditLog"]["edges"]
    assert audit[0]["node"]["type"] == "agent.registered"
    assert audit[0]["node"]["actor"].startswith("key:")


def test_bad_input_is_refused_with_a_code_and_changes_nothing(server: Server) -> None:
    cases = [
        GROK | {"provider": "mistral"},
        GROK | {"model": "gpt-4o"},
        GROK | {"name": ""},
        GROK | {"temperature": 2.5},
        GROK | {"maxTokens": 0},
    ]
    for bad in cases:
        error = server.error(REGISTER, {"input": bad})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (bad, error)
    assert (
        server.error(REGISTER, {"input": GROK | {"temperature": "hot"}})["extensions"]["code"]
        == "BAD_USER_INPUT"
    )
    assert server.error("{ nope }")["extensions"]["code"] == "BAD_USER_INPUT"
    assert (
        server.error('{ agent(id: "not-a-uuid") { id } }')["extensions"]["code"] == "BAD_USER_INPUT"
    )
    assert (
        server.error(
            'mutation { retireAgent(id: "00000000-0000-0000-0000-000000000001") { position } }'
        )["extensions"]["code"]
        == "NOT_FOUND"
    )
    assert server.data("{ events { position } }")["events"] == []


def test_duplicate_name_is_a_conflict(server: Server) -> None:
    register(server)
    assert (
        server.error(REGISTER, {"input": GROK | {"name": "CODER"}})["extensions"]["code"]
        == "CONFLICT"
    )


def test_agents_paginate_with_cursors(server: Server) -> None:
    last = 0
    for i in range(5):
        last = int(str(register(server, name=f"agent-{i}")["position"]))
    query = (
        "query($after: String, $p: Int) { agents(first: 2, after: $after, consistentWith: $p)"
        " { edges { node { name } } pageInfo { hasNextPage endCursor } } }"
    )
    names, after = [], None
    while True:
        page = server.data(query, {"after": after, "p": last})["agents"]
        names += [e["node"]["name"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert names == [f"agent-{i}" for i in range(5)]
    assert (
        server.error('{ agents(after: "bogus") { edges { cursor } } }')["extensions"]["code"]
        == "BAD_USER_INPUT"
    )


def test_api_key_rotation_and_revocation_over_http(server: Server) -> None:
    issued = server.data(
        'mutation { issueApiKey(input: {name: "ci", role: "operator"}) { secret position apiKey { id status } } }'
    )["issueApiKey"]
    old = issued["secret"]
    rotated = server.data(
        "mutation($id: ID!) { rotateApiKey(id: $id, gracePeriodSeconds: 3600) { secret position } }",
        {"id": issued["apiKey"]["id"]},
    )["rotateApiKey"]
    assert server.data("{ projections { name } }", token=old)
    assert server.data("{ projections { name } }", token=rotated["secret"])
    server.data(
        "mutation($id: ID!) { revokeApiKey(id: $id) { position } }", {"id": issued["apiKey"]["id"]}
    )
    assert server.gql("{ projections { name } }", token=rotated["secret"]).status_code == 401
    assert server.gql("{ projections { name } }", token=old).status_code == 401


def test_health_metrics_graphiql_and_openapi(server: Server) -> None:
    assert httpx.get(f"{server.url}/health/live").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/health/ready").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'lightning_projection_lag{projection="agents"}' in metrics
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert httpx.get(f"{server.url}/schema/openapi.json").status_code == 200
