"""The lightning CLI as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Server, base_env, run_cli
from .test_graphql import GROK, REGISTER


def test_keys_bootstrap_prints_a_working_admin_secret(sqlite_server: Server) -> None:
    result = sqlite_server.cli("keys", "bootstrap")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.strip()
    assert secret.startswith("lk_")
    assert sqlite_server.data("{ apiKeys { edges { node { role } } } }", token=secret)
    events = sqlite_server.cli("events", "list", "--json").stdout
    assert secret not in events


def test_events_replay_and_projections(sqlite_server: Server) -> None:
    agent = sqlite_server.data(REGISTER, {"input": GROK})["registerAgent"]["agent"]
    sqlite_server.data(
        'mutation($id: ID!) { reconfigureAgent(input: {id: $id, model: "grok-beta"}) { position } }',
        {"id": agent["id"]},
    )
    listed = sqlite_server.cli("events", "list", "--json", "--type", "agent.*")
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["agent.registered", "agent.reconfigured"]
    assert set(lines[0]) == {
        "id",
        "type",
        "aggregate_type",
        "aggregate_id",
        "version",
        "position",
        "occurred_at",
        "actor",
        "correlation_id",
        "causation_id",
        "schema_version",
        "data",
    }
    by_aggregate = sqlite_server.cli(
        "events", "list", "--json", "--aggregate", agent["id"], "--since", "0"
    )
    assert len(by_aggregate.stdout.splitlines()) == 2

    shown = sqlite_server.cli("events", "show", str(lines[1]["position"]))
    assert json.loads(shown.stdout)["data"]["model"] == "grok-beta"

    replayed = sqlite_server.cli("replay", agent["id"], "--to-version", "1", "--json")
    assert replayed.returncode == 0, replayed.stderr
    state = json.loads(replayed.stdout)
    assert state["version"] == 1 and state["state"]["config"]["model"] == "grok-code-fast-1"
    as_of = sqlite_server.cli("replay", agent["id"], "--as-of", lines[0]["occurred_at"], "--json")
    assert json.loads(as_of.stdout)["state"]["config_version"] == 1

    status = sqlite_server.cli("projections", "status", "--json")
    names = {json.loads(line)["name"] for line in status.stdout.splitlines()}
    assert names == {"agents", "api_keys", "audit_log"}


def test_cli_errors_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    env = base_env(f"sqlite:///{tmp_path}/lightning.db")
    unknown = run_cli(env, tmp_path, "replay", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 3 and "NOT_FOUND" in unknown.stderr
    bad = run_cli(env, tmp_path, "replay", "not-an-id")
    assert bad.returncode == 2 and "not a valid id" in bad.stderr
    both = run_cli(
        env,
        tmp_path,
        "replay",
        "00000000-0000-0000-0000-000000000000",
        "--to-version",
        "1",
        "--as-of",
        "2026-01-01",
    )
    assert both.returncode == 2
    missing = run_cli(env, tmp_path, "events", "show", "999")
    assert missing.returncode == 3
