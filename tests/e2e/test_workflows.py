"""Workflows and sagas as a client and an operator meet them: GraphQL over HTTP against the real
server (embedded and distributed), the CLI, the published JSON Schema of the workflow document."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from .conftest import Server
from .test_graphql import GROK, REGISTER

CREATE = """
mutation($input: CreateWorkflowInput!) {
  createWorkflow(input: $input) { position workflow { id name status draftVersion } }
}"""
WORKFLOW = """
query($id: ID!) {
  workflow(id: $id) {
    id name status publishedVersion degraded failureReason
    versions { version status agents failureReason }
  }
}"""
AGENT_WORKFLOWS = "query($id: ID!) { agent(id: $id) { workflows { workflowId version } } }"
SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "workflow.schema.json"


def agent(server: Server, name: str) -> str:
    return str(
        server.data(REGISTER, {"input": GROK | {"name": name}})["registerAgent"]["agent"]["id"]
    )


def chain(*agents: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "kind": "agent", "config": {"agentId": a}, "position": {"x": i, "y": 0}}
        for i, a in enumerate(agents)
    ]
    nodes.append({"id": "review", "kind": "human_review", "config": {"instructions": "look"}})
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(len(agents) - 1)]
    edges.append({"source": f"n{len(agents) - 1}", "target": "review"})
    return {"nodes": nodes, "edges": edges}


def create(server: Server, name: str, *agents: str) -> str:
    created = server.data(CREATE, {"input": {"name": name, "graph": chain(*agents)}})
    return str(created["createWorkflow"]["workflow"]["id"])


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.1)


def workflow(server: Server, wf: str) -> dict[str, Any]:
    found: dict[str, Any] = server.data(WORKFLOW, {"id": wf})["workflow"]
    return found


def settled(wf: dict[str, Any] | None) -> bool:
    return wf is not None and wf["status"] not in ("DRAFT", "PUBLISHING")


def test_publish_a_workflow_and_watch_one_fail_and_be_compensated(server: Server) -> None:
    a1, a2, a3 = agent(server, "planner"), agent(server, "coder"), agent(server, "reviewer")
    good, doomed = create(server, "triage", a1, a2), create(server, "doomed", a1, a2, a3)
    server.data("mutation($id: ID!) { retireAgent(id: $id) { position } }", {"id": a3})
    for wf in (good, doomed):
        asked = server.data(
            "mutation($id: ID!) { publishWorkflow(id: $id) { position workflow { status } } }",
            {"id": wf},
        )["publishWorkflow"]
        assert asked["workflow"]["status"] == "PUBLISHING"  # a request: the saga decides

    published = eventually(lambda: workflow(server, good), settled)
    assert (published["status"], published["publishedVersion"]) == ("PUBLISHED", 1)
    assert published["versions"] == [
        {"version": 1, "status": "PUBLISHED", "agents": [a1, a2], "failureReason": None}
    ]
    failed = eventually(lambda: workflow(server, doomed), settled)
    assert failed["status"] == "PUBLISH_FAILED"
    assert failed["failureReason"] == f"agent {a3} is retired"

    def agent_workflows(a: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = server.data(AGENT_WORKFLOWS, {"id": a})["agent"]["workflows"]
        return found

    for a in (a1, a2):  # attached to the published one; the failed one was detached again
        eventually(
            lambda a=a: agent_workflows(a), lambda w: w == [{"workflowId": good, "version": 1}]
        )  # type: ignore[misc]
    assert agent_workflows(a3) == []

    sagas = server.data(
        """{ sagas(type: "workflow_publish") { edges { node {
              id type status correlationId failureReason nextTimerAt steps { name status }
              state } } } }"""
    )["sagas"]["edges"]
    by_id = {e["node"]["id"]: e["node"] for e in sagas}
    assert by_id[good]["status"] == "COMPLETED"
    assert [s["status"] for s in by_id[good]["steps"]] == ["DONE", "DONE", "DONE"]
    assert by_id[good]["state"]["phase"] == "completed"
    assert by_id[doomed]["status"] == "COMPENSATED"
    assert by_id[doomed]["failureReason"] == f"agent {a3} is retired"
    assert [s["status"] for s in by_id[doomed]["steps"]] == [
        "COMPENSATED",
        "COMPENSATED",
        "FAILED",
        "CANCELLED",
        "DONE",
    ]
    compensated = server.data("{ sagas(status: COMPENSATED) { edges { node { id } } } }")
    assert [e["node"]["id"] for e in compensated["sagas"]["edges"]] == [doomed]

    # the agent retired after the publication degrades the published workflow
    server.data("mutation($id: ID!) { retireAgent(id: $id) { position } }", {"id": a2})
    degraded = eventually(lambda: workflow(server, good), lambda w: w["degraded"])
    assert degraded["status"] == "PUBLISHED"
    listed = server.data("{ workflows(status: PUBLISHED) { edges { node { id degraded } } } }")
    assert listed["workflows"]["edges"] == [{"node": {"id": good, "degraded": True}}]
    consumers = server.data("{ consumers { kind name status } }")["consumers"]
    assert {c["name"] for c in consumers if c["kind"] == "sagas"} == {
        "workflow_publish",
        "agent_retirement",
        "key_lifecycle",
        "timers",
    }


def test_a_key_expires_on_time_and_a_rotated_secret_is_retired_after_its_grace(
    server: Server,
) -> None:
    expires_at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    issued = server.data(
        'mutation($t: DateTime) { issueApiKey(input: {name: "short", role: "viewer", expiresAt: $t})'
        " { secret apiKey { id } } }",
        {"t": expires_at},
    )["issueApiKey"]
    rotating = server.data(
        'mutation { issueApiKey(input: {name: "rotating", role: "viewer"}) { secret apiKey { id } } }'
    )["issueApiKey"]
    old_secret = rotating["secret"]
    server.data(
        "mutation($id: ID!) { rotateApiKey(id: $id, gracePeriodSeconds: 2) { secret } }",
        {"id": rotating["apiKey"]["id"]},
    )
    assert server.gql("{ projections { name } }", token=old_secret).status_code == 200

    def key(id_: str) -> dict[str, Any]:
        found: dict[str, Any] = server.data(
            "query($id: ID!) { apiKey(id: $id) { status previousValidUntil } }", {"id": id_}
        )["apiKey"]
        return found

    eventually(lambda: key(issued["apiKey"]["id"]), lambda k: k["status"] == "expired", 15)
    assert server.gql("{ projections { name } }", token=issued["secret"]).status_code == 401
    eventually(lambda: key(rotating["apiKey"]["id"]), lambda k: k["previousValidUntil"] is None, 15)
    assert server.gql("{ projections { name } }", token=old_secret).status_code == 401
    history = server.data(
        "query($id: ID!) { history(aggregateId: $id) { type actor } }",
        {"id": rotating["apiKey"]["id"]},
    )["history"]
    assert history[-1] == {"type": "api_key.previous_secret_retired", "actor": "saga:key_lifecycle"}


def test_export_import_round_trip_over_graphql_and_the_cli(
    sqlite_server: Server, tmp_path: Path
) -> None:
    a1, a2 = agent(sqlite_server, "a1"), agent(sqlite_server, "a2")
    wf = create(sqlite_server, "triage", a1, a2)
    exported = sqlite_server.data("query($id: ID!) { exportWorkflow(id: $id) }", {"id": wf})[
        "exportWorkflow"
    ]
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator(schema).validate(exported)  # an off-the-shelf validator
    served = httpx.get(f"{sqlite_server.url}/schemas/workflow.json", timeout=10).json()
    assert served == schema

    imported = sqlite_server.data(
        "mutation($d: JSON!) { importWorkflow(document: $d) { workflow { id name status } } }",
        {"d": exported},
    )["importWorkflow"]["workflow"]
    assert imported["name"] == "triage" and imported["id"] != wf and imported["status"] == "DRAFT"
    again = sqlite_server.data(
        "query($id: ID!) { exportWorkflow(id: $id) }", {"id": imported["id"]}
    )
    assert again["exportWorkflow"] == exported

    file = tmp_path / "triage.json"
    out = sqlite_server.cli("workflows", "export", wf, str(file))
    assert out.returncode == 0, out.stderr
    assert json.loads(file.read_text()) == exported
    into = sqlite_server.cli("workflows", "import", str(file))
    assert into.returncode == 0, into.stderr
    copy = into.stdout.strip()
    second = tmp_path / "copy.json"
    assert sqlite_server.cli("workflows", "export", copy, str(second)).returncode == 0
    assert second.read_bytes() == file.read_bytes()  # exactly

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(exported | {"colour": "red"}))
    refused = sqlite_server.cli("workflows", "import", str(bad))
    assert refused.returncode == 2 and "colour" in refused.stderr
    bad.write_text("{not json")
    assert sqlite_server.cli("workflows", "import", str(bad)).returncode == 2
    error = sqlite_server.error(
        "mutation($d: JSON!) { importWorkflow(document: $d) { position } }",
        {"d": {**exported, "graph": {"nodes": [], "edges": []}}},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_restore_an_agent_and_a_workflow_version(sqlite_server: Server) -> None:
    a1 = agent(sqlite_server, "a1")
    reconf = (
        'mutation($id: ID!) { reconfigureAgent(input: {id: $id, model: "grok-beta"}) { position } }'
    )
    sqlite_server.data(reconf, {"id": a1})
    restored = sqlite_server.data(
        "mutation($id: ID!) { restoreAgentVersion(id: $id, version: 1) { agent { configVersion model } } }",
        {"id": a1},
    )["restoreAgentVersion"]["agent"]
    assert restored == {"configVersion": 3, "model": "grok-code-fast-1"}

    wf = create(sqlite_server, "wf", a1)
    sqlite_server.data("mutation($id: ID!) { publishWorkflow(id: $id) { position } }", {"id": wf})
    eventually(lambda: workflow(sqlite_server, wf), settled)
    sqlite_server.data(
        """mutation($id: ID!) { updateWorkflowDraft(input: {id: $id, graph: {nodes: [
             {id: "t", kind: "tool", config: {name: "search"}}]}}) { workflow { draftVersion } } }""",
        {"id": wf},
    )
    back = sqlite_server.data(
        "mutation($id: ID!) { restoreWorkflowVersion(id: $id, version: 1)"
        " { workflow { draftVersion draft { nodes { id kind } } } } }",
        {"id": wf},
    )["restoreWorkflowVersion"]["workflow"]
    assert back["draftVersion"] == 3
    assert [n["id"] for n in back["draft"]["nodes"]] == ["n0", "review"]
    missing = sqlite_server.error(
        "mutation($id: ID!) { restoreWorkflowVersion(id: $id, version: 9) { position } }",
        {"id": wf},
    )
    assert missing["extensions"]["code"] == "NOT_FOUND"


def test_bad_workflows_are_refused_with_a_code_and_change_nothing(sqlite_server: Server) -> None:
    a1 = agent(sqlite_server, "a1")
    cases = [
        {"nodes": [{"id": "a", "kind": "llm"}]},
        {"nodes": [{"id": "a", "kind": "agent", "config": {"agentId": "nope"}}]},
        {
            "nodes": [
                {"id": "a", "kind": "tool", "config": {"name": "t"}},
                {"id": "b", "kind": "tool", "config": {"name": "t"}},
            ],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
        },
        {"nodes": [{"id": f"n{i}", "kind": "tool", "config": {"name": "t"}} for i in range(201)]},
        {"nodes": [{"id": "a", "kind": "tool", "config": {"name": "x" * 20_000}}]},
        {"nodes": [{"id": "a\u0000", "kind": "tool", "config": {"name": "t"}}]},
        {
            "nodes": [{"id": "a", "kind": "agent", "config": {"agentId": a1}}],
            "edges": [{"source": "a", "target": "a", "targetPort": "nope"}],
        },
    ]
    for graph in cases:
        error = sqlite_server.error(CREATE, {"input": {"name": "bad", "graph": graph}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (graph, error)
    assert sqlite_server.data("{ workflows { edges { node { id } } } }")["workflows"]["edges"] == []

    wf = create(sqlite_server, "wf", a1)
    sqlite_server.data("mutation($id: ID!) { archiveWorkflow(id: $id) { position } }", {"id": wf})
    archived = sqlite_server.error(
        "mutation($id: ID!) { publishWorkflow(id: $id) { position } }", {"id": wf}
    )
    assert archived["extensions"]["code"] == "CONFLICT"
    viewer = sqlite_server.data(
        'mutation { issueApiKey(input: {name: "v", role: "viewer"}) { secret } }'
    )["issueApiKey"]["secret"]
    forbidden = sqlite_server.error(
        CREATE, {"input": {"name": "x", "graph": chain(a1)}}, token=viewer
    )
    assert forbidden["extensions"]["code"] == "FORBIDDEN"
    for query in (
        '{ sagas(type: "nope") { edges { cursor } } }',
        '{ sagas(after: "garbage") { edges { cursor } } }',
    ):
        assert sqlite_server.error(query)["extensions"]["code"] == "BAD_USER_INPUT"


def test_the_sagas_cli(sqlite_server: Server) -> None:
    a1 = agent(sqlite_server, "a1")
    wf = create(sqlite_server, "wf", a1)
    sqlite_server.data("mutation($id: ID!) { publishWorkflow(id: $id) { position } }", {"id": wf})
    eventually(lambda: workflow(sqlite_server, wf), settled)
    listed = sqlite_server.cli("sagas", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert (line["type"], line["id"], line["status"]) == ("workflow_publish", wf, "COMPLETED")
    shown = sqlite_server.cli("sagas", "show", wf)
    assert (
        shown.returncode == 0
        and "COMPLETED" in shown.stdout
        and f"attach agent {a1}" in shown.stdout
    )
    assert sqlite_server.cli("sagas", "show", "nope").returncode == 3
    assert sqlite_server.cli("sagas", "list", "--status", "sideways").returncode == 2
    assert sqlite_server.cli("sagas", "abort", wf).returncode == 2  # no --yes
    ended = sqlite_server.cli("sagas", "abort", wf, "--yes")
    assert ended.returncode == 4 and "nothing left to abort" in ended.stderr
    assert sqlite_server.cli("sagas", "retry", wf).returncode == 3  # nothing parked
