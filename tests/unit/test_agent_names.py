from uuid import UUID

import pytest

from lightning.domain import agent_names
from lightning.domain.agent_names import AgentNameReleased, AgentNameReserved, NameReservation
from lightning.domain.errors import Conflict

A = UUID(int=1)
B = UUID(int=2)


def state_after(*events: agent_names.AgentNameEvent) -> NameReservation:
    state = NameReservation()
    for event in events:
        state = agent_names.evolve(state, event)
    return state


def test_given_free_name_when_reserve_then_reserved() -> None:
    assert agent_names.reserve(state_after(), "coder", A) == [
        AgentNameReserved(name="coder", agent_id=A)
    ]


def test_given_name_held_when_other_agent_reserves_then_conflict() -> None:
    with pytest.raises(Conflict):
        agent_names.reserve(state_after(AgentNameReserved(name="coder", agent_id=A)), "coder", B)


def test_given_name_held_when_holder_reserves_twice_then_nothing_new() -> None:
    assert (
        agent_names.reserve(state_after(AgentNameReserved(name="coder", agent_id=A)), "coder", A)
        == []
    )


def test_given_released_name_when_other_agent_reserves_then_reserved() -> None:
    state = state_after(
        AgentNameReserved(name="coder", agent_id=A), AgentNameReleased(name="coder", agent_id=A)
    )
    assert agent_names.reserve(state, "coder", B) == [AgentNameReserved(name="coder", agent_id=B)]
    assert state.version == 2


def test_release_by_non_holder_changes_nothing() -> None:
    assert agent_names.release(state_after(AgentNameReserved(name="c", agent_id=A)), "c", B) == []


def test_reservation_ids_ignore_case() -> None:
    assert agent_names.reservation_id("Coder") == agent_names.reservation_id("coder")
