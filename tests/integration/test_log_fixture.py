"""Events already stored never become unreadable.

``tests/fixtures/logs/`` holds logs written by an earlier version's own command handlers (every
event type, and the odd values that version accepted; see ``write_log.py`` there). Each is loaded,
byte for byte, into a fresh store on SQLite and on PostgreSQL and read back through every read
model, GraphQL's ``stateAt``, ``history`` and list queries, and ``lightning events list``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from typer.testing import CliRunner

from lightning.api.schema import build_schema
from lightning.bootstrap import Lightning
from lightning.cli import app as cli
from lightning.consumers import ParkedFilter, run_to_head
from lightning.replay import replay
from lightning.services import SYSTEM
from lightning.store.envelope import REDACTED_FIELDS, Envelope

LOGS = sorted((Path(__file__).parents[1] / "fixtures" / "logs").glob("*.jsonl"))


@pytest.fixture(params=LOGS, ids=[p.stem for p in LOGS])
def log_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def load_log(app: Lightning, path: Path) -> list[dict[str, Any]]:
    """Insert the stored events exactly as they were written; positions must come out the same."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        stored = StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"].encode(),
        )
        assert app.store.backend.recorder.insert_events([stored]) == [row["position"]]
    return rows


def holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(holds_nul(v) for v in value)
    return False


def nul_events(app: Lightning) -> list[Envelope]:
    return [e for e in app.store.iterate(0) if e.aggregate_type == "agent" and holds_nul(e.data)]


def test_every_read_model_is_built_from_the_log(lightning: Lightning, log_file: Path) -> None:
    rows = load_log(lightning, log_file)
    log = list(lightning.store.iterate(0))
    assert [e.position for e in log] == [r["position"] for r in rows]
    run_to_head(lightning.consumers.build("projections"))
    store = lightning.consumers.tracking

    audit = store.read("SELECT * FROM audit_log ORDER BY position")
    assert [(r["position"], r["event_id"], r["type"]) for r in audit] == [
        (e.position, str(e.id), e.type) for e in log
    ]
    assert [json.loads(r["data"]) for r in audit] == [e.public_data() for e in log]

    keys = {r["id"]: r for r in store.read("SELECT * FROM api_keys")}
    key_ids = {e.aggregate_id for e in log if e.aggregate_type == "api_key"}
    assert set(keys) == {str(k) for k in key_ids}
    for key_id in key_ids:
        state = replay(lightning, key_id)
        row = keys[str(key_id)]
        assert (row["version"], row["status"], row["name"]) == (
            state.version,
            state.state["status"],
            state.state["name"],
        )

    agents = {r["id"]: r for r in store.read("SELECT * FROM agents")}
    agent_ids = {e.aggregate_id for e in log if e.aggregate_type == "agent"}
    assert store.position("agents") == log[-1].position
    parked = lightning.consumers.parked(ParkedFilter())
    if lightning.store.backend.kind == "postgres" and nul_events(lightning):
        # PostgreSQL text columns refuse NUL: that agent's events are parked for the agents
        # read model alone, in order, and every other agent (before and after it) is there.
        poison = nul_events(lightning)
        odd = poison[0].aggregate_id
        odd_events = [e for e in log if e.aggregate_id == odd]
        assert [(p.handler, p.key, p.position) for p in parked] == [
            ("agents", str(odd), e.position) for e in odd_events
        ]
        assert "NUL" in (parked[0].error or "") and parked[0].attempts == 3
        assert [p.error for p in parked[1:]] == [None] * (len(parked) - 1)
        assert str(odd) not in agents
        agent_ids.discard(odd)
        statuses = {s.name: s for s in lightning.consumers.statuses("projections")}
        assert statuses["agents"].status == "degraded" and statuses["agents"].parked == 2
        assert {statuses["api_keys"].status, statuses["audit_log"].status} == {"running"}
    else:
        assert parked == []
    for agent_id in agent_ids:
        state = replay(lightning, agent_id, to_version=agents[str(agent_id)]["version"])
        row = agents[str(agent_id)]
        assert row["description"] == state.state["config"]["description"]
        assert json.loads(row["tools"]) == state.state["config"]["tools"]
        assert (row["status"], row["config_version"]) == (
            state.state["status"],
            state.state["config_version"],
        )
        attached = [{k: str(v) for k, v in w.items()} for w in state.state["workflows"]]
        assert [{k: str(v) for k, v in w.items()} for w in json.loads(row["workflows"])] == attached
    workflows = {r["id"]: r for r in store.read("SELECT * FROM workflows")}
    workflow_ids = {e.aggregate_id for e in log if e.aggregate_type == "workflow"}
    assert set(workflows) == {str(w) for w in workflow_ids}
    for workflow_id in workflow_ids:
        folded = replay(lightning, workflow_id).state
        row = workflows[str(workflow_id)]
        assert (row["status"], row["published_version"], row["draft_version"]) == (
            folded["status"],
            folded["published_version"],
            folded["draft_version"],
        )


async def test_graphql_reads_every_aggregate_at_every_version(
    lightning: Lightning, log_file: Path
) -> None:
    load_log(lightning, log_file)
    log = list(lightning.store.iterate(0))
    run_to_head(lightning.consumers.build("projections"))
    schema = build_schema()
    context = {"lightning": lightning, "principal": SYSTEM, "feed": None}

    async def data(query: str, **variables: object) -> Any:
        result = await schema.execute(query, variable_values=variables, context_value=context)
        assert result.errors is None, result.errors
        return result.data

    versions = {e.aggregate_id: e.version for e in log}
    for aggregate_id, last in versions.items():
        history = await data(
            "query($id: ID!) { history(aggregateId: $id) { position version type data } }",
            id=str(aggregate_id),
        )
        assert [h["version"] for h in history["history"]] == list(range(1, last + 1))
        for version in range(1, last + 1):
            state = await data(
                "query($id: ID!, $v: Int) { stateAt(aggregateId: $id, version: $v)"
                " { aggregateType version position occurredAt state } }",
                id=str(aggregate_id),
                v=version,
            )
            assert state["stateAt"]["version"] == version
    listed = await data(
        "{ agents(first: 100) { edges { node { id name description tools status } } }"
        " apiKeys(first: 100) { edges { node { id name status expiresAt previousValidUntil } } }"
        " auditLog(first: 100) { edges { node { position type actor data } } }"
        " events(first: 100) { position type data } }"
    )
    assert [e["position"] for e in listed["events"]] == [e.position for e in log]
    assert len(listed["auditLog"]["edges"]) == len(log)
    keys = [e["node"] for e in listed["apiKeys"]["edges"]]
    assert len(keys) == len({e.aggregate_id for e in log if e.aggregate_type == "api_key"})
    if log_file.name.startswith("853230a"):
        # An expiry with no UTC form (year 10000 there) is shown with its own offset.
        assert "9999-12-31T23:59:59.000000-12:00" in {k["expiresAt"] for k in keys}


def test_events_list_prints_every_event(
    lightning: Lightning, log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_log(lightning, log_file)
    log = list(lightning.store.iterate(0))
    monkeypatch.setenv("LIGHTNING_DATABASE_URL", lightning.settings.database_url)
    result = CliRunner().invoke(cli, ["events", "list", "--json", "--limit", "1000"])
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed == [e.public() for e in log]  # the redacted form (DESIGN §3)
    assert not any(REDACTED_FIELDS & set(e["data"]) for e in printed)
    table = CliRunner().invoke(cli, ["events", "list", "--limit", "1000"])
    assert table.exit_code == 0, table.output


def test_the_sagas_run_over_an_old_log(lightning: Lightning, log_file: Path) -> None:
    """A deployment upgraded to the sagas: they start from the beginning of a log written
    before they existed, give its keys the timers they never had (grace ends and expiries long
    past fire at once) and park nothing."""
    from .sagas_support import settle

    load_log(lightning, log_file)
    settle(lightning)
    assert lightning.consumers.parked(ParkedFilter(consumer="sagas")) == []
    statuses = {s.name: s for s in lightning.consumers.statuses("sagas")}
    assert {s.status for s in statuses.values()} == {"running"}
    keys = {e.aggregate_id for e in lightning.store.iterate(0) if e.aggregate_type == "api_key"}
    for key in keys:
        state = lightning.api_keys.get(key)
        # no key holds a previous secret past its grace, none is active past its expiry
        assert (
            state.previous_valid_until is None
            or state.previous_secret_hash is None
            or (state.previous_valid_until > lightning.clock())
        )
        if state.expires_at is not None and state.status == "active":
            assert state.expires_at > lightning.clock()
