from uuid import UUID

import pytest

from lightning.domain import agents
from lightning.domain.agents import (
    AgentReconfigured,
    AgentRegistered,
    AgentRetired,
    ReconfigureAgent,
    RegisterAgent,
    RetireAgent,
)
from lightning.domain.catalogue import Catalogue
from lightning.domain.errors import Conflict, NotFound, ValidationFailed

from .given import given

AGENT = UUID("00000000-0000-0000-0000-00000000000a")
CATALOGUE = Catalogue()
REGISTERED = AgentRegistered(
    name="coder",
    description="",
    provider="grok",
    model="grok-code-fast-1",
    temperature=0.2,
    max_tokens=4096,
    system_prompt="",
    tools=(),
)


def when(history: list[agents.AgentEvent], command: object) -> list[agents.AgentEvent]:
    state = given(history, lambda s, e: agents.evolve(s, e, AGENT))
    return agents.decide(command, state, CATALOGUE)  # type: ignore[arg-type]


def register(**overrides: object) -> RegisterAgent:
    fields: dict[str, object] = {
        "agent_id": AGENT,
        "name": "coder",
        "provider": "grok",
        "model": "grok-code-fast-1",
        "temperature": 0.2,
    }
    return RegisterAgent.of(**(fields | overrides))


def test_given_nothing_when_register_grok_agent_then_registered() -> None:
    assert when([], register()) == [REGISTERED]


def test_given_nothing_when_register_with_padded_name_then_name_is_trimmed() -> None:
    assert when([], register(name="  coder  ")) == [REGISTERED]


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-20241022"), ("grok", "grok-beta")],
)
def test_given_nothing_when_register_each_provider_then_registered(
    provider: str, model: str
) -> None:
    [event] = when([], register(provider=provider, model=model, temperature=0.5))
    assert isinstance(event, AgentRegistered)
    assert (event.provider, event.model) == (provider, model)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"provider": "mistral"}, "provider"),
        ({"model": "gpt-4o"}, "model"),  # a real model, but not grok's: never rerouted
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.01}, "temperature"),
        (
            {"provider": "anthropic", "model": "claude-3-opus-20240229", "temperature": 1.5},
            "temperature",
        ),
        ({"max_tokens": 0}, "maxTokens"),
        ({"tools": ("",)}, "tools"),
    ],
)
def test_given_nothing_when_register_with_bad_input_then_refused(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        when([], register(**overrides))
    assert any(key.startswith(field) for key in raised.value.details)


def test_given_registered_when_register_same_again_then_nothing_new() -> None:
    assert when([REGISTERED], register()) == []


def test_given_registered_when_register_different_config_with_same_id_then_conflict() -> None:
    with pytest.raises(Conflict):
        when([REGISTERED], register(temperature=1.0))


def test_given_registered_when_reconfigure_then_only_changes_and_config_version_bumped() -> None:
    events = when(
        [REGISTERED], ReconfigureAgent(agent_id=AGENT, model="grok-beta", temperature=0.2)
    )
    assert events == [AgentReconfigured(config_version=2, model="grok-beta")]


def test_given_reconfigured_when_reconfigure_again_then_version_keeps_counting() -> None:
    history = [REGISTERED, AgentReconfigured(config_version=2, model="grok-beta")]
    events = when(history, ReconfigureAgent(agent_id=AGENT, temperature=1.5))
    assert events == [AgentReconfigured(config_version=3, temperature=1.5)]


def test_given_registered_when_reconfigure_with_nothing_new_then_no_events() -> None:
    assert when([REGISTERED], ReconfigureAgent(agent_id=AGENT, temperature=0.2)) == []


def test_given_grok_agent_when_switch_provider_without_model_then_refused() -> None:
    with pytest.raises(ValidationFailed) as raised:
        when([REGISTERED], ReconfigureAgent(agent_id=AGENT, provider="openai"))
    assert "model" in raised.value.details


def test_given_nothing_when_reconfigure_then_not_found() -> None:
    with pytest.raises(NotFound):
        when([], ReconfigureAgent(agent_id=AGENT, temperature=1.0))


def test_given_registered_when_retire_then_retired() -> None:
    assert when([REGISTERED], RetireAgent(agent_id=AGENT)) == [AgentRetired(name="coder")]


def test_given_retired_when_retire_twice_then_nothing_new() -> None:
    assert when([REGISTERED, AgentRetired(name="coder")], RetireAgent(agent_id=AGENT)) == []


def test_given_retired_when_reconfigure_then_conflict() -> None:
    with pytest.raises(Conflict):
        when(
            [REGISTERED, AgentRetired(name="coder")],
            ReconfigureAgent(agent_id=AGENT, temperature=1.0),
        )


def test_evolve_ignores_events_it_does_not_know() -> None:
    state = given([REGISTERED], lambda s, e: agents.evolve(s, e, AGENT))
    from lightning.domain.api_keys import ApiKeyRevoked

    after = agents.evolve(state, ApiKeyRevoked(), AGENT)
    assert after is not None and state is not None
    assert after.config == state.config


def test_the_catalogue_is_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.bootstrap import catalogue_from
    from lightning.config import Settings

    monkeypatch.setenv("LIGHTNING_MODEL_CATALOGUE", '{"grok": ["grok-4"], "local": ["llama-3"]}')
    catalogue = catalogue_from(Settings())
    [event] = agents.decide(register(provider="local", model="llama-3"), None, catalogue)
    assert isinstance(event, AgentRegistered) and event.model == "llama-3"
    with pytest.raises(ValidationFailed):
        agents.decide(register(), None, catalogue)  # grok-code-fast-1 is no longer offered


# ---- workflows attached, configuration versions restored ---------------------------------------

WF = UUID(int=0xF)


def test_given_active_when_attach_workflow_then_attached_and_twice_is_nothing() -> None:
    attached = when([REGISTERED], agents.AttachWorkflow(agent_id=AGENT, workflow_id=WF, version=1))
    assert attached == [agents.AgentWorkflowAttached(workflow_id=WF, version=1)]
    again = agents.AttachWorkflow(agent_id=AGENT, workflow_id=WF, version=1)
    assert when([REGISTERED, *attached], again) == []
    state = given([REGISTERED, *attached], lambda s, e: agents.evolve(s, e, AGENT))
    assert state is not None and state.workflows == (
        agents.AttachedWorkflow(workflow_id=WF, version=1),
    )


def test_given_retired_when_attach_workflow_then_refused_as_retired() -> None:
    with pytest.raises(Conflict, match="is retired"):
        when(
            [REGISTERED, AgentRetired(name="coder")],
            agents.AttachWorkflow(agent_id=AGENT, workflow_id=WF, version=1),
        )


def test_given_nothing_when_attach_workflow_then_not_found() -> None:
    with pytest.raises(NotFound):
        when([], agents.AttachWorkflow(agent_id=AGENT, workflow_id=WF, version=1))


def test_given_attached_and_retired_when_detach_then_detached_compensation_is_allowed() -> None:
    attached = agents.AgentWorkflowAttached(workflow_id=WF, version=1)
    retired = AgentRetired(
        name="coder", workflows=(agents.AttachedWorkflow(workflow_id=WF, version=1),)
    )
    detach = agents.DetachWorkflow(agent_id=AGENT, workflow_id=WF, version=1)
    detached = when([REGISTERED, attached, retired], detach)
    assert detached == [agents.AgentWorkflowDetached(workflow_id=WF, version=1)]
    assert when([REGISTERED, attached, retired, *detached], detach) == []


def test_given_attached_when_retire_then_the_retirement_lists_the_workflows() -> None:
    attached = agents.AgentWorkflowAttached(workflow_id=WF, version=2)
    assert when([REGISTERED, attached], RetireAgent(agent_id=AGENT)) == [
        AgentRetired(name="coder", workflows=(agents.AttachedWorkflow(workflow_id=WF, version=2),))
    ]


def test_given_reconfigured_when_restore_version_1_then_a_new_version_equal_to_it() -> None:
    history = [REGISTERED, AgentReconfigured(config_version=2, model="grok-beta", temperature=0.9)]
    restored = when(history, agents.RestoreAgentVersion(agent_id=AGENT, config_version=1))
    assert restored == [
        AgentReconfigured(
            config_version=3, model="grok-code-fast-1", temperature=0.2, restored_from=1
        )
    ]
    state = given([*history, *restored], lambda s, e: agents.evolve(s, e, AGENT))
    assert (
        state is not None
        and state.config == given([REGISTERED], lambda s, e: agents.evolve(s, e, AGENT)).config
    )  # type: ignore[union-attr]
    assert state.config_version == 3
    # the same configuration again is nothing new; a version that never was is not found
    assert (
        when([*history, *restored], agents.RestoreAgentVersion(agent_id=AGENT, config_version=1))
        == []
    )
    with pytest.raises(NotFound, match="configuration version 7"):
        when(history, agents.RestoreAgentVersion(agent_id=AGENT, config_version=7))


def test_given_a_model_no_longer_offered_when_restore_then_refused_not_rerouted() -> None:
    history = [REGISTERED, AgentReconfigured(config_version=2, model="grok-beta")]
    narrower = Catalogue({"grok": ("grok-beta",)})
    state = given(history, lambda s, e: agents.evolve(s, e, AGENT))
    with pytest.raises(ValidationFailed, match="not offered"):
        agents.decide(agents.RestoreAgentVersion(agent_id=AGENT, config_version=1), state, narrower)


def test_given_retired_when_restore_then_refused() -> None:
    with pytest.raises(Conflict, match="retired"):
        when(
            [REGISTERED, AgentRetired(name="coder")],
            agents.RestoreAgentVersion(agent_id=AGENT, config_version=1),
        )
