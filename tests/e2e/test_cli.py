"""The lightning CLI as an operator runs it."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lightning.bootstrap import Lightning
from lightning.config import Settings

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
        "command_id",
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
    assert names == {"agents", "api_keys", "audit_log", "workflows"}


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


def test_projections_rebuild_all_in_one_pass_with_a_progress_bar(tmp_path: Path) -> None:
    env = base_env(f"sqlite:///{tmp_path}/lightning.db")
    for _ in range(3):
        assert run_cli(env, tmp_path, "keys", "bootstrap").returncode == 0
    rebuilt = run_cli(env, tmp_path, "projections", "rebuild", "--all", "--batch", "2")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilding" in rebuilt.stderr and "events/s" in rebuilt.stderr  # the bar, on stderr
    assert "rebuilt every read model up to position" in rebuilt.stderr
    status = run_cli(env, tmp_path, "projections", "status", "--json")
    lines = [json.loads(line) for line in status.stdout.splitlines()]
    assert {line["name"] for line in lines} == {"agents", "api_keys", "audit_log", "workflows"}
    assert all(line["lag"] == 0 and line["position"] > 0 for line in lines), lines

    one = run_cli(env, tmp_path, "projections", "rebuild", "api_keys")
    assert one.returncode == 0 and "rebuilt api_keys up to position" in one.stderr
    for args, code, text in (
        ((), 2, "BAD_USER_INPUT"),
        (("agents", "--all"), 2, "BAD_USER_INPUT"),
        (("nope",), 3, "NOT_FOUND"),
        (("--all", "--batch", "0"), 2, "--batch"),
    ):
        refused = run_cli(env, tmp_path, "projections", "rebuild", *args)
        assert refused.returncode == code and text in refused.stderr, (args, refused.stderr)


ISSUE = (
    'mutation { issueApiKey(input: {name: "ci", role: "operator"})'
    " { secret position apiKey { id } } }"
)
ROTATE = (
    "mutation($id: ID!) { rotateApiKey(id: $id, gracePeriodSeconds: 3600) { secret position } }"
)


def stored_hashes(server: Server, *positions: int) -> set[str]:
    """The secret hashes the store holds at these positions (the full form, as only it keeps)."""
    settings = Settings(
        database_url=server.env["LIGHTNING_DATABASE_URL"], amqp_url=None, _env_file=None
    )
    with Lightning.open(settings) as app:
        envelopes = [app.store.get(p) for p in positions]
    return {
        value
        for e in envelopes
        if e is not None
        for key, value in e.data.items()
        if key in {"secret_hash", "previous_secret_hash"}
    }


def tail(server: Server, *args: str, until: str) -> str:
    """``events tail`` until its output shows ``until`` (or 30 s pass), then Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning.cli", "events", "tail", *args],
        env=server.env | {"COLUMNS": "200"},  # a table row on one line
        cwd=server.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout = process.stdout
    assert stdout is not None
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(stdout.readline, "")))
    reader.start()
    deadline = time.monotonic() + 30
    while until not in "".join(printed) and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
        reader.join(timeout=5)
    assert process.returncode == 0, stderr
    output = "".join(printed)
    assert until in output, output
    return output


def test_events_never_show_secret_hashes(server: Server) -> None:
    """DESIGN §3: the CLI prints the redacted envelope GraphQL shows; the store keeps the hashes."""
    issued = server.data(ISSUE)["issueApiKey"]
    rotated = server.data(ROTATE, {"id": issued["apiKey"]["id"]})["rotateApiKey"]
    hashes = stored_hashes(server, issued["position"], rotated["position"])
    assert hashes == {
        hashlib.sha256(s.encode()).hexdigest() for s in (issued["secret"], rotated["secret"])
    }

    def assert_redacted(output: str) -> None:
        assert "secret_hash" not in output
        assert not [h for h in hashes if h in output]

    listed = server.cli("events", "list", "--json", "--type", "api_key.*")
    assert listed.returncode == 0, listed.stderr
    assert_redacted(listed.stdout)
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["api_key.issued", "api_key.rotated"]
    assert lines[0]["data"]["role"] == "operator"
    assert "previous_valid_until" in lines[1]["data"]
    table = server.cli("events", "list", "--type", "api_key.*")
    assert table.returncode == 0, table.stderr
    assert_redacted(table.stdout)

    for position in (issued["position"], rotated["position"]):
        shown = server.cli("events", "show", str(position))
        assert shown.returncode == 0, shown.stderr
        assert_redacted(shown.stdout)
        assert json.loads(shown.stdout)["position"] == position

    tailed = tail(server, "--after", "0", "--json", until='"api_key.rotated"')
    assert_redacted(tailed)
    assert {json.loads(line)["type"] for line in tailed.splitlines()} >= {
        "api_key.issued",
        "api_key.rotated",
    }
    assert_redacted(tail(server, "--after", "0", until="api_key.rotated"))


def test_distributed_mode_refuses_to_start_without_an_encryption_key(tmp_path: Path) -> None:
    env = base_env("postgresql://postgres@127.0.0.1:5432/postgres") | {
        "LIGHTNING_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/"
    }
    del env["LIGHTNING_ENCRYPTION_KEY"]
    for command in (["serve"], ["worker", "all"]):
        done = run_cli(env, tmp_path, *command)
        assert done.returncode == 2, (command, done.stderr)
        assert "LIGHTNING_ENCRYPTION_KEY" in done.stderr and "Traceback" not in done.stderr
    generated = run_cli(env, tmp_path, "keys", "generate", check=True).stdout.strip()
    key_id, _, key = generated.partition(":")
    assert key_id and len(key) == 44
