"""Commands carry identity (DESIGN §6): the same commandId or Idempotency-Key twice is one
effect, and the repeat answers the first result (a secret shown once is null then)."""

from __future__ import annotations

import concurrent.futures

import httpx

from .conftest import ADMIN, Server
from .test_graphql import GROK

REGISTER = (
    "mutation($input: RegisterAgentInput!) { registerAgent(input: $input)"
    " { position agent { id name } } }"
)
ISSUE = (
    'mutation($id: String) { issueApiKey(input: {name: "ci", role: "viewer", commandId: $id})'
    " { secret position apiKey { id } } }"
)


def agents_named(server: Server, name: str) -> int:
    query = (
        "query($at: Int) { agents(first: 500, consistentWith: $at) { edges { node { name } } } }"
    )
    edges = server.data(query, {"at": head(server)})["agents"]["edges"]
    return sum(edge["node"]["name"] == name for edge in edges)


def head(server: Server) -> int:
    return max(e["position"] for e in server.data("{ events(first: 500) { position } }")["events"])


def test_the_same_command_id_twice_is_one_effect_and_answers_the_first_result(
    server: Server,
) -> None:
    first = server.data(REGISTER, {"input": GROK | {"commandId": "reg-1"}})["registerAgent"]
    before = head(server)
    again = server.data(REGISTER, {"input": GROK | {"commandId": "reg-1"}})["registerAgent"]
    assert again == first
    assert head(server) == before
    assert agents_named(server, GROK["name"]) == 1


def test_a_repeated_key_issue_does_not_show_the_secret_again(server: Server) -> None:
    first = server.data(ISSUE, {"id": "issue-1"})["issueApiKey"]
    again = server.data(ISSUE, {"id": "issue-1"})["issueApiKey"]
    assert first["secret"] and again["secret"] is None
    assert again["apiKey"] == first["apiKey"] and again["position"] == first["position"]
    other = server.data(ISSUE, {"id": "issue-2"})["issueApiKey"]
    assert other["apiKey"] != first["apiKey"]


def test_the_idempotency_key_header_covers_a_one_mutation_request(server: Server) -> None:
    def post(query: str, variables: dict[str, object]) -> httpx.Response:
        return httpx.post(
            f"{server.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": "order-66"},
            timeout=30,
        )

    first = post(REGISTER, {"input": GROK}).json()["data"]["registerAgent"]
    again = post(REGISTER, {"input": GROK}).json()["data"]["registerAgent"]
    assert again == first and agents_named(server, GROK["name"]) == 1
    two = (
        'mutation { a: retireAgent(id: "00000000-0000-0000-0000-000000000000") { position }'
        ' b: retireAgent(id: "00000000-0000-0000-0000-000000000001") { position } }'
    )
    error = post(two, {}).json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Idempotency-Key" in error["message"]


def test_concurrent_repeats_of_one_command_apply_it_once(server: Server) -> None:
    inputs = {"input": GROK | {"name": "racer", "commandId": "race-1"}}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.data(REGISTER, inputs), range(8)))
    assert len({a["registerAgent"]["agent"]["id"] for a in answers}) == 1
    assert agents_named(server, "racer") == 1


def test_a_command_id_is_bounded(server: Server) -> None:
    for bad in ("", "x" * 129, "a\x00b"):
        error = server.error(REGISTER, {"input": GROK | {"commandId": bad}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
