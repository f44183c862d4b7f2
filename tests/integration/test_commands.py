"""Command handling on every backend: optimistic concurrency, uniqueness, group commit."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.domain import agent_names
from lightning.domain.errors import Conflict, NotFound, ValidationFailed
from lightning.services import SYSTEM, Context

CTX = Context(SYSTEM)


def register(app: Lightning, name: str, **extra: object) -> UUID:
    fields = {"provider": "grok", "model": "grok-code-fast-1", "temperature": 0.2} | extra
    return app.agents.register(CTX, name=name, **fields).agent.id


def test_positions_increase_and_history_is_ordered(lightning: Lightning) -> None:
    agent_id = register(lightning, "coder")
    lightning.agents.reconfigure(CTX, agent_id, temperature=1.0)
    lightning.agents.retire(CTX, agent_id)
    history = lightning.store.load(agent_id)
    assert [e.type for e in history] == ["agent.registered", "agent.reconfigured", "agent.retired"]
    assert [e.version for e in history] == [1, 2, 3]
    positions = [e.position for e in lightning.store.read(0, 100)]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_bad_input_changes_nothing(lightning: Lightning) -> None:
    with pytest.raises(ValidationFailed):
        register(lightning, "coder", model="gpt-4o")
    with pytest.raises(ValidationFailed):
        register(lightning, "coder", temperature="hot")
    assert lightning.store.max_position() == 0


def test_unknown_agent_is_not_found(lightning: Lightning) -> None:
    with pytest.raises(NotFound):
        lightning.agents.retire(CTX, UUID(int=5))


def test_concurrent_registrations_of_one_name_let_exactly_one_win(lightning: Lightning) -> None:
    def attempt(i: int) -> UUID | None:
        try:
            return register(lightning, "dup", description=str(i))
        except Conflict:
            return None

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(32)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    reservation = lightning.store.load(agent_names.reservation_id("dup"))
    assert [e.type for e in reservation] == ["agent_name.reserved"]
    assert reservation[0].data["agent_id"] == str(winners[0])


def test_names_are_unique_ignoring_case_and_free_again_after_retire(lightning: Lightning) -> None:
    first = register(lightning, "Coder")
    with pytest.raises(Conflict):
        register(lightning, "coder")
    lightning.agents.retire(CTX, first)
    second = register(lightning, "coder")
    assert second != first


def test_rename_moves_the_reservation(lightning: Lightning) -> None:
    agent = register(lightning, "alpha")
    lightning.agents.reconfigure(CTX, agent, name="beta")
    register(lightning, "alpha")  # free again
    with pytest.raises(Conflict):
        register(lightning, "beta")


def test_concurrent_reconfigurations_all_apply_in_some_order(lightning: Lightning) -> None:
    agent = register(lightning, "busy")
    temperatures = [round(0.01 * i, 2) for i in range(1, 25)]

    def reconfigure(t: float) -> int:
        return lightning.agents.reconfigure(CTX, agent, temperature=t).agent.config_version

    with ThreadPoolExecutor(12) as pool:
        versions = list(pool.map(reconfigure, temperatures))
    assert sorted(versions) == list(range(2, 26))  # every command applied once, none lost
    assert [e.version for e in lightning.store.load(agent)] == list(range(1, 26))


def test_many_concurrent_commands_share_transactions_and_all_commit(lightning: Lightning) -> None:
    with ThreadPoolExecutor(32) as pool:
        ids = list(pool.map(lambda i: register(lightning, f"agent-{i}"), range(200)))
    assert len(set(ids)) == 200
    assert len(list(lightning.store.iterate(0))) == 400  # each: a reservation and a registration


def test_repeated_retire_is_idempotent(lightning: Lightning) -> None:
    agent = register(lightning, "once")
    first = lightning.agents.retire(CTX, agent)
    again = lightning.agents.retire(CTX, agent)
    assert again.position <= first.position  # nothing new was appended
    assert [e.type for e in lightning.store.load(agent)][-1] == "agent.retired"
    assert len(lightning.store.load(agent)) == 2


def test_api_key_authenticates_until_revoked_and_old_secret_in_grace(lightning: Lightning) -> None:
    issued = lightning.api_keys.issue(CTX, name="ci", role="operator")
    assert issued.secret is not None
    principal = lightning.api_keys.authenticate(issued.secret)
    assert principal is not None and principal.role == "operator"
    assert principal.actor == f"key:{issued.key.id}"
    rotated = lightning.api_keys.rotate(CTX, issued.key.id, grace_period_seconds=3600)
    assert rotated.secret is not None
    assert lightning.api_keys.authenticate(issued.secret) is not None
    assert lightning.api_keys.authenticate(rotated.secret) is not None
    lightning.api_keys.revoke(CTX, issued.key.id)
    assert lightning.api_keys.authenticate(rotated.secret) is None
    assert lightning.api_keys.authenticate("lk_" + "0" * 32 + "_" + "a" * 43) is None
    assert lightning.api_keys.authenticate("garbage") is None


def test_secrets_never_reach_the_store(lightning: Lightning) -> None:
    issued = lightning.api_keys.issue(CTX, name="ci", role="viewer")
    assert issued.secret is not None
    raw = [e.to_json() for e in lightning.store.iterate(0)]
    assert all(issued.secret not in line for line in raw)


def test_a_command_id_applies_once_whoever_races(lightning: Lightning) -> None:
    """Eight threads register with one command id: one agent, every caller told its result
    (the losers of the name race included: the first application won it)."""
    once = UUID(int=42)

    def register(_: int) -> tuple[int, UUID]:
        result = lightning.agents.register(
            Context(SYSTEM, command_id=once),
            name="once",
            provider="grok",
            model="grok-beta",
        )
        return result.position, result.agent.id

    with ThreadPoolExecutor(8) as pool:
        answers = set(pool.map(register, range(8)))
    assert len(answers) == 1
    registered = [e for e in lightning.store.iterate(0) if e.type == "agent.registered"]
    assert len(registered) == 1 and registered[0].command_id == once


def test_a_repeated_key_command_answers_without_the_secret(lightning: Lightning) -> None:
    ctx = Context(SYSTEM, command_id=UUID(int=7))
    first = lightning.api_keys.issue(ctx, name="ci", role="viewer")
    again = lightning.api_keys.issue(
        Context(SYSTEM, command_id=UUID(int=7)), name="ci", role="viewer"
    )
    assert first.secret is not None and again.secret is None
    assert (again.position, again.key.id) == (first.position, first.key.id)
    other = Context(SYSTEM, command_id=UUID(int=8))
    revoked = lightning.api_keys.revoke(other, first.key.id)
    assert (
        lightning.api_keys.revoke(Context(SYSTEM, command_id=UUID(int=8)), first.key.id) == revoked
    )
