"""Parking as an operator meets it: the real server with a failpoint on one aggregate, GraphQL,
/health/ready, /metrics and the real CLI (run without the failpoint: the fixed build)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from .conftest import Server, base_env, run_cli, start_server
from .test_graphql import register

RECONFIGURE = (
    "mutation($id: ID!, $t: Float) { reconfigureAgent(input: {id: $id, temperature: $t})"
    " { position } }"
)
AGENT = "query($id: ID!, $p: Int) { agent(id: $id, consistentWith: $p) { temperature } }"


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str]) -> Iterator[Server]:
    servers = start_server(workdir, env)
    try:
        yield next(servers)
    finally:
        servers.close()


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@contextlib.contextmanager
def failing_on_one_agent(
    tmp_path: Path, **settings: str
) -> Iterator[tuple[Server, str, dict[str, str]]]:
    """A server whose agents projection fails on the agent it yields (a failpoint set when the
    server was restarted after registering it), and the environment without the failpoint."""
    env = base_env(f"sqlite:///{tmp_path}/lightning.db") | settings
    with serving(tmp_path, env) as server:
        target = str(register(server, name="target")["agent"]["id"])  # type: ignore[index]
    with serving(tmp_path, env | {"LIGHTNING_FAILPOINTS": f"apply:agents:{target}"}) as server:
        yield server, target, env


def test_a_parked_aggregate_seen_and_healed_from_outside(tmp_path: Path) -> None:
    with failing_on_one_agent(tmp_path, LIGHTNING_CONSUMER_RETRY_DELAY="0.01") as (
        server,
        target,
        env,
    ):
        held = server.data(RECONFIGURE, {"id": target, "t": 1.5})["reconfigureAgent"]["position"]
        other = register(server, name="other")
        wait_until(lambda: server.data("{ parkedEvents { key } }")["parkedEvents"])

        parked = server.data(
            '{ parkedEvents(consumer: "projections") { consumer handler key position type'
            " error attempts parkedAt } }"
        )["parkedEvents"]
        assert [(p["handler"], p["key"], p["position"]) for p in parked] == [
            ("agents", target, held)
        ]
        assert parked[0]["attempts"] == 6 and "failpoint" in parked[0]["error"]
        consumers = {
            c["name"]: c
            for c in server.data("{ consumers { name kind position lag status parked error } }")[
                "consumers"
            ]
        }
        assert consumers["agents"]["status"] == "degraded" and consumers["agents"]["parked"] == 1
        assert consumers["audit_log"]["kind"] == "projections"

        ready = httpx.get(f"{server.url}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["consumers"]["agents"]["parked"] == 1
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert (
            'lightning_consumer_parked_events{consumer="projections",handler="agents"} 1.0'
            in metrics
        )

        refused = server.error(AGENT, {"id": target, "p": held})
        assert refused["extensions"]["code"] == "UNAVAILABLE" and "parked" in refused["message"]
        assert refused["extensions"]["details"]["parked"][0]["key"] == target
        agents = server.error(
            "query($p: Int) { agents(consistentWith: $p) { edges { node { id } } } }", {"p": held}
        )
        assert agents["extensions"]["code"] == "UNAVAILABLE"
        other_id = other["agent"]["id"]  # type: ignore[index]
        assert server.data(AGENT, {"id": other_id, "p": other["position"]})["agent"]

        # The operator, with the fixed build (no failpoint in this environment):
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return run_cli(env, tmp_path, *args)

        listed = cli("consumers", "parked", "--json")
        assert [json.loads(line)["position"] for line in listed.stdout.splitlines()] == [held]
        status = cli("consumers", "status")
        assert status.returncode == 0 and "degraded" in status.stdout
        dry = cli("consumers", "retry-parked", "--aggregate", target, "--dry-run")
        assert dry.returncode == 0 and "would apply 1 event(s)" in dry.stdout, dry.stdout
        assert '"temperature": 1.5' in dry.stdout  # the row after
        assert server.data("{ parkedEvents { key } }")["parkedEvents"]  # nothing committed
        no = cli("consumers", "skip-parked", "--aggregate", target)
        assert no.returncode == 2 and "--yes" in no.stderr
        healed = cli("consumers", "retry-parked", "--aggregate", target)
        assert healed.returncode == 0 and "applied 1 event(s)" in healed.stdout, healed.stdout
        assert server.data(AGENT, {"id": target, "p": held})["agent"] == {"temperature": 1.5}
        assert httpx.get(f"{server.url}/health/ready", timeout=10).json()["status"] == "ok"
        nothing = cli("consumers", "retry-parked", "--aggregate", target)
        assert nothing.returncode == 3


def test_skip_parked_is_recorded_with_the_operator_as_actor(tmp_path: Path) -> None:
    with failing_on_one_agent(tmp_path, LIGHTNING_CONSUMER_RETRY_DELAY="0.01") as (
        server,
        target,
        env,
    ):
        held = server.data(RECONFIGURE, {"id": target, "t": 1.5})["reconfigureAgent"]["position"]
        wait_until(lambda: server.data("{ parkedEvents { key } }")["parkedEvents"])
        skipped = server.cli(
            "consumers", "skip-parked", "--aggregate", target, "--yes", "--reason", "known bad"
        )
        assert skipped.returncode == 0, skipped.stderr
        assert f"position {held}" in skipped.stdout
        assert server.data("{ parkedEvents { key } }")["parkedEvents"] == []
        events = [
            json.loads(line)
            for line in server.cli(
                "events", "list", "--json", "--type", "consumer.*"
            ).stdout.splitlines()
        ]
        assert [(e["type"], e["actor"]) for e in events] == [
            ("consumer.event_skipped", f"cli:{getpass.getuser()}")
        ]
        assert events[0]["data"] == {
            "consumer": "projections",
            "handler": "agents",
            "aggregate": target,
            "position": held,
            "reason": "known bad",
        }
        # an internal type: not matched by "*" in a subscription filter or the audit log's
        audit = server.data('{ auditLog(types: ["*"]) { edges { node { type } } } }')
        assert "consumer.event_skipped" not in {
            e["node"]["type"] for e in audit["auditLog"]["edges"]
        }
        bad = server.cli("events", "list", "--type", "agent.re*")
        assert bad.returncode == 2 and "not an event-type pattern" in bad.stderr
        assert server.cli("events", "list", "--limit", "0").returncode == 2
    assert run_cli(env, tmp_path, "consumers", "parked").returncode == 0


async def test_waiting_for_consistency_holds_no_thread(tmp_path: Path) -> None:
    """80 requests waiting on consistentWith (a projection keeps retrying an event) while another
    client's plain query must still be answered at once: the waits hold no worker thread (there
    are 40), they sleep on the event loop."""
    with failing_on_one_agent(
        tmp_path, LIGHTNING_CONSISTENCY_TIMEOUT="4", LIGHTNING_CONSUMER_RETRIES="100"
    ) as (server, target, _):
        held = server.data(RECONFIGURE, {"id": target, "t": 1.5})["reconfigureAgent"]["position"]
        wait_query = "query($p: Int) { agents(consistentWith: $p) { edges { node { id } } } }"
        headers = {"Authorization": f"Bearer {server.env['LIGHTNING_ADMIN_SECRET']}"}
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers, timeout=30, limits=limits
        ) as client:

            async def post(query: str, variables: dict[str, Any]) -> httpx.Response:
                return await client.post("/graphql", json={"query": query, "variables": variables})

            started = time.monotonic()
            waits = [asyncio.create_task(post(wait_query, {"p": held})) for _ in range(80)]
            await asyncio.sleep(1.0)  # all of them waiting now
            plain = await post("{ auditLog(first: 1) { edges { node { position } } } }", {})
            answered = time.monotonic() - started
            results = await asyncio.gather(*waits)
            waited = time.monotonic() - started
        assert plain.status_code == 200 and "errors" not in plain.json()
        assert answered < 3, f"a plain query waited {answered:.1f}s behind 80 consistency waits"
        assert waited >= 4  # the waits really waited for their timeout
        codes = {r.json()["errors"][0]["extensions"]["code"] for r in results}
        assert codes == {"UNAVAILABLE"}


def test_serve_killed_while_an_aggregate_is_parked(tmp_path: Path) -> None:
    """Embedded mode: `lightning serve` runs the projections; SIGKILL it while an aggregate is
    parked and events keep coming: nothing is lost, doubled or reordered."""
    with failing_on_one_agent(tmp_path, LIGHTNING_CONSUMER_RETRY_DELAY="0.01") as (
        server,
        target,
        env,
    ):
        first = server.data(RECONFIGURE, {"id": target, "t": 1.5})["reconfigureAgent"]["position"]
        wait_until(lambda: server.data("{ parkedEvents { key } }")["parkedEvents"])
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
    with serving(tmp_path, server.env) as server:  # the same build, still failing on the target
        second = server.data(RECONFIGURE, {"id": target, "t": 1.7})["reconfigureAgent"]["position"]
        other = register(server, name="other")
        assert server.data(
            AGENT,
            {"id": other["agent"]["id"], "p": other["position"]},  # type: ignore[index]
        )["agent"]
        wait_until(lambda: len(server.data("{ parkedEvents { key } }")["parkedEvents"]) == 2)
        parked = server.data("{ parkedEvents { key position } }")["parkedEvents"]
        assert parked == [{"key": target, "position": first}, {"key": target, "position": second}]
        healed = run_cli(env, tmp_path, "consumers", "retry-parked", "--aggregate", target)
        assert healed.returncode == 0 and "applied 2 event(s)" in healed.stdout, healed.stdout
        assert server.data(AGENT, {"id": target, "p": second})["agent"] == {"temperature": 1.7}
