"""The sagas and durable timers on a real deployment, driven from outside as a user would.

A fresh PostgreSQL database, RabbitMQ, `lightning serve`, and two separate worker processes
(`worker relay projections` and `worker sagas`); everything through GraphQL over HTTP with an
operator's API key:

1. 100 workflow publications (each over 3 of 12 shared agents; 5 of them doomed: their last
   agent was retired after the draft), sent by 8 clients at once, with the saga worker killed
   (SIGKILL) twice mid-run and started again. Expected: 95 PUBLISHED, 5 PUBLISH_FAILED and
   compensated, every agent's `workflows` exactly the published workflows that use it, no
   attachment applied twice.
2. A key rotated with a 2 s grace, the saga worker killed during the grace and started again:
   `api_key.previous_secret_retired` within 2 s after the grace. A key issued with `expiresAt`
   3 s ahead: `api_key.expired` within 2 s of it, and its secret answers 401.

    .venv/bin/python scripts/demo/sagas.py      (about a minute; exit 1 if anything is off)
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))
import stack

SAGAS = "sagas"
PIPELINE = "relay projections"


class Client:
    def __init__(self, server: stack.Server, token: str | None = None) -> None:
        self.url = server.graphql
        self.token = token or server.token
        self.http = httpx.Client(timeout=30)

    def data(self, query: str, **variables: Any) -> Any:
        response = self.http.post(
            self.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"{response.status_code}: {body}")
        return body["data"]


def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def workflows(client: Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = client.data(
            "query($after: String) { workflows(first: 100, after: $after) { edges { node {"
            " id name status failureReason } } pageInfo { hasNextPage endCursor } } }",
            after=after,
        )["workflows"]
        found += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


def events(client: Client, types: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.data(
            "query($after: Int!, $types: [String!]) { events(after: $after, first: 500, types:"
            " $types) { position type aggregateId occurredAt actor data } }",
            after=after,
            types=types,
        )["events"]
        found += page
        if len(page) < 500:
            return found
        after = page[-1]["position"]


def graph(agents: list[str]) -> dict[str, Any]:
    nodes = [
        {"id": f"n{i}", "kind": "agent", "config": {"agentId": a}} for i, a in enumerate(agents)
    ]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(len(agents) - 1)]
    return {"nodes": nodes, "edges": edges}


REGISTER = (
    'mutation($name: String!) { registerAgent(input: {name: $name, provider: "grok",'
    ' model: "grok-code-fast-1"}) { agent { id } } }'
)
CREATE = (
    "mutation($g: GraphInput!, $n: String!) { createWorkflow(input: {name: $n, graph: $g})"
    " { workflow { id } } }"
)
PUBLISH = "mutation($id: ID!) { publishWorkflow(id: $id) { position } }"
AGENT_WORKFLOWS = "query($id: ID!) { agent(id: $id) { workflows { workflowId version } } }"


def scenario(ops: Client) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """12 shared agents, 5 doomed ones; 100 workflows over 3 shared agents each, 5 of them
    with a doomed agent last; the doomed agents retired after the drafts."""
    shared = [
        ops.data(REGISTER, name=f"shared-{i}")["registerAgent"]["agent"]["id"] for i in range(12)
    ]
    doomed_agents = [
        ops.data(REGISTER, name=f"doomed-{i}")["registerAgent"]["agent"]["id"] for i in range(5)
    ]
    uses: dict[str, list[str]] = {}
    for i in range(100):
        chain = [shared[(i + k) % 12] for k in range(3)]
        if i % 20 == 7:
            chain.append(doomed_agents[i // 20])  # the failing agent last: something to undo
        created = ops.data(CREATE, g=graph(chain), n=f"wf-{i}")
        uses[created["createWorkflow"]["workflow"]["id"]] = chain
    for agent in doomed_agents:
        ops.data("mutation($id: ID!) { retireAgent(id: $id) { position } }", id=agent)
    doomed = {wf for wf, chain in uses.items() if chain[-1] in doomed_agents}
    return uses, doomed, [*shared, *doomed_agents]


def publish_under_fire(server: stack.Server, ops: Client, admin: Client, flows: list[str]) -> float:
    """Publish every workflow from 8 clients; kill -9 the saga worker at 25 and 60 settled."""

    def settled() -> int:
        return sum(w["status"] in ("PUBLISHED", "PUBLISH_FAILED") for w in workflows(admin))

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(ops.data, PUBLISH, id=wf) for wf in flows]
        for target in (25, 60):
            eventually(lambda: settled() >= target, 120, f"{target} settled")  # noqa: B023
            server.kill_worker(SAGAS)
            print(f"   killed `worker sagas` (SIGKILL) at {settled()} of 100 settled; restarted")
            server.restart(SAGAS)
        for future in futures:
            future.result()
    eventually(lambda: settled() == 100, 180, "all 100 settled")
    return time.monotonic() - started


def check_publications(
    admin: Client, uses: dict[str, list[str]], doomed: set[str], agents: list[str]
) -> list[str]:
    listed = {w["id"]: w for w in workflows(admin)}
    statuses = Counter(listed[wf]["status"] for wf in uses)
    problems = []
    if statuses != Counter({"PUBLISHED": 95, "PUBLISH_FAILED": 5}):
        problems.append(f"statuses {dict(statuses)}")
    if {wf for wf in uses if listed[wf]["status"] == "PUBLISH_FAILED"} != doomed:
        problems.append("the failed ones are not the doomed ones")
    problems += [
        f"{wf}: reason {listed[wf]['failureReason']!r}"
        for wf in doomed
        if listed[wf]["failureReason"] != f"agent {uses[wf][-1]} is retired"
    ]
    time.sleep(1)  # the read models follow the sagas' last detachments
    exact = 0
    for agent in agents:
        got = admin.data(AGENT_WORKFLOWS, id=agent)["agent"]["workflows"]
        attached = {(w["workflowId"], w["version"]) for w in got}
        expected = {(wf, 1) for wf, chain in uses.items() if wf not in doomed and agent in chain}
        exact += attached == expected
        if attached != expected:
            problems.append(f"agent {agent}: {len(attached)} attached, {len(expected)} expected")
    attachments = Counter(
        (e["aggregateId"], e["data"]["workflow_id"])
        for e in events(admin, ["agent.workflow_attached"])
    )
    twice = sum(1 for n in attachments.values() if n > 1)
    if twice:
        problems.append(f"{twice} attachments applied twice")
    detached = len(events(admin, ["agent.workflow_detached"]))
    sagas = admin.data(
        '{ sagas(type: "workflow_publish", first: 500) { edges { node { id status } } } }'
    )["sagas"]["edges"]
    print(
        f"   {statuses['PUBLISHED']} PUBLISHED, {statuses['PUBLISH_FAILED']} PUBLISH_FAILED;"
        f" saga instances {dict(Counter(e['node']['status'] for e in sagas))}"
    )
    print(f"   agents whose workflows are exact: {exact} of {len(agents)}")
    print(
        f"   {sum(attachments.values())} agent.workflow_attached over {len(attachments)}"
        f" (agent, workflow) pairs, {twice} applied twice; {detached} agent.workflow_detached"
    )
    return problems


def publications(server: stack.Server, ops: Client, admin: Client) -> list[str]:
    print("1. 100 publications, 5 doomed, the saga worker killed twice")
    uses, doomed, agents = scenario(ops)
    elapsed = publish_under_fire(server, ops, admin, list(uses))
    print(f"   all 100 settled {elapsed:.1f} s after the first request")
    return check_publications(admin, uses, doomed, agents)


def key_timers(server: stack.Server, admin: Client) -> list[str]:
    problems = []
    issue = (
        'mutation($n: String!, $t: DateTime) { issueApiKey(input: {name: $n, role: "viewer",'
        " expiresAt: $t}) { secret apiKey { id } } }"
    )
    rotating = admin.data(issue, n="rotating", t=None)["issueApiKey"]
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    expiring = admin.data(issue, n="expiring", t=expires_at.isoformat())["issueApiKey"]
    rotated = admin.data(
        "mutation($id: ID!) { rotateApiKey(id: $id, gracePeriodSeconds: 2)"
        " { apiKey { previousValidUntil } } }",
        id=rotating["apiKey"]["id"],
    )["rotateApiKey"]
    grace_end = datetime.fromisoformat(rotated["apiKey"]["previousValidUntil"])
    server.kill_worker(SAGAS)
    killed_at = datetime.now(UTC)
    server.restart(SAGAS)

    def last(key: str, type_: str) -> dict[str, Any] | None:
        history = admin.data(
            "query($id: ID!) { history(aggregateId: $id) { type occurredAt } }", id=key
        )
        return next((h for h in history["history"] if h["type"] == type_), None)

    eventually(
        lambda: last(rotating["apiKey"]["id"], "api_key.previous_secret_retired") is not None,
        30,
        "the retirement",
    )
    eventually(
        lambda: last(expiring["apiKey"]["id"], "api_key.expired") is not None, 30, "the expiry"
    )
    retired = last(rotating["apiKey"]["id"], "api_key.previous_secret_retired")
    expired = last(expiring["apiKey"]["id"], "api_key.expired")
    assert retired is not None and expired is not None
    late_retired = (datetime.fromisoformat(retired["occurredAt"]) - grace_end).total_seconds()
    late_expired = (datetime.fromisoformat(expired["occurredAt"]) - expires_at).total_seconds()
    answer = httpx.post(
        server.graphql,
        json={"query": "{ projections { name } }"},
        headers={"Authorization": f"Bearer {expiring['secret']}"},
        timeout=10,
    ).status_code
    print("2. durable timers, the saga worker killed during the grace")
    print(f"   killed {(grace_end - killed_at).total_seconds():.2f} s before the grace ended")
    print(
        f"   api_key.previous_secret_retired {late_retired:.2f} s after the grace ended (limit 2 s)"
    )
    print(f"   api_key.expired {late_expired:.2f} s after expiresAt (limit 2 s)")
    print(f"   the expired key's secret now answers HTTP {answer}")
    if not 0 <= late_retired < 2:
        problems.append(f"retired {late_retired:.2f} s after the grace")
    if not 0 <= late_expired < 2:
        problems.append(f"expired {late_expired:.2f} s after expiresAt")
    if answer != 401:
        problems.append(f"the expired key's secret answers {answer}")
    return problems


def main() -> int:
    print(f"sagas demo: {stack.loadavg()}")
    with stack.distributed("sagas", workers=(PIPELINE, SAGAS)) as server:
        admin = Client(server)
        operator = admin.data(
            'mutation { issueApiKey(input: {name: "ops", role: "operator"}) { secret } }'
        )["issueApiKey"]["secret"]
        problems = publications(server, Client(server, operator), admin)
        problems += key_timers(server, admin)
    for line in server.problems:
        print(f"   log: {line}")
    if problems:
        print("NOT AS EXPECTED:\n  " + "\n  ".join(problems))
        return 1
    print("as expected")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
