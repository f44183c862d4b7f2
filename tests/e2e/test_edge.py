"""The GraphQL edge as a client meets it: automatic persisted queries (Apollo's protocol, by
POST and by GET), several server processes sharing one port in distributed mode (a revocation
in effect in all of them within a second), no access log by default."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import ADMIN, Server, base_env, run_cli, start_server

QUERY = "{ projections { name } }"
SHA = hashlib.sha256(QUERY.encode()).hexdigest()


def persisted(sha: str, query: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
    if query is not None:
        body["query"] = query
    return body


def post(server: Server, body: dict[str, object], token: str = ADMIN) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def test_automatic_persisted_queries(sqlite_server: Server) -> None:
    unknown = post(sqlite_server, persisted(SHA))
    assert unknown.status_code == 200  # Apollo's clients then send the document
    (error,) = unknown.json()["errors"]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = post(sqlite_server, persisted(SHA, QUERY)).json()
    assert registered["data"]["projections"]
    assert post(sqlite_server, persisted(SHA)).json() == registered
    by_get = httpx.get(
        f"{sqlite_server.url}/graphql",
        params={"extensions": json.dumps(persisted(SHA)["extensions"])},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert by_get.json() == registered
    wrong = post(sqlite_server, persisted("0" * 64, QUERY)).json()["errors"][0]
    assert wrong["extensions"]["code"] == "BAD_USER_INPUT"
    malformed = post(sqlite_server, persisted("not-a-hash")).json()["errors"][0]
    assert malformed["extensions"]["code"] == "BAD_USER_INPUT"
    assert httpx.post(f"{sqlite_server.url}/graphql", json=persisted(SHA)).status_code == 401
    log = (sqlite_server.workdir / "serve.log").read_text()
    assert "POST /graphql" not in log  # no access log line per request by default


def test_several_processes_need_the_distributed_mode(tmp_path: Path) -> None:
    env = base_env(f"sqlite:///{tmp_path}/lightning.db")
    refused = run_cli(env, tmp_path, "serve", "--workers", "2")
    assert refused.returncode == 2
    assert "distributed mode" in refused.stderr


@pytest.fixture
def two_processes(tmp_path: Path, postgres_url: str, amqp_url: str) -> Iterator[Server]:
    run = uuid.uuid4().hex[:10]
    env = base_env(postgres_url) | {
        "LIGHTNING_AMQP_URL": amqp_url,
        "LIGHTNING_EXCHANGE": f"lightning.events.e2e-{run}",
        "LIGHTNING_QUEUE_PREFIX": f"lightning-e2e-{run}",
    }
    yield from start_server(tmp_path, env, "--workers", "2")


def test_a_revocation_is_in_effect_in_every_process_within_a_second(
    two_processes: Server,
) -> None:
    server = two_processes
    issued = server.data(
        'mutation { issueApiKey(input: {name: "ci", role: "viewer"}) { secret apiKey { id } } }'
    )["issueApiKey"]
    secret = issued["secret"]
    for _ in range(20):  # new connections: both processes serve, and cache the key
        assert post(server, {"query": QUERY}, secret).status_code == 200
    server.data(
        "mutation($id: ID!) { revokeApiKey(id: $id) { position } }", {"id": issued["apiKey"]["id"]}
    )
    time.sleep(1.0)
    codes = {post(server, {"query": QUERY}, secret).status_code for _ in range(20)}
    assert codes == {401}
    # A persisted query registered with one process is known to the other.
    post(server, persisted(SHA, QUERY))
    time.sleep(0.2)  # its registration is written after the answer
    answers = [post(server, persisted(SHA)).json() for _ in range(10)]
    assert all("errors" not in a for a in answers), answers
