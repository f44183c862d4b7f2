"""decide(command, state) -> events and evolve(state, event) -> state for an agent."""

from __future__ import annotations

from uuid import UUID

from ..catalogue import Catalogue
from ..errors import Conflict, NotFound, ValidationFailed
from ..messages import DomainEvent
from .commands import (
    AgentCommand,
    AttachWorkflow,
    DetachWorkflow,
    ReconfigureAgent,
    RegisterAgent,
    RestoreAgentVersion,
    RetireAgent,
)
from .events import (
    AgentEvent,
    AgentReconfigured,
    AgentRegistered,
    AgentRetired,
    AgentWorkflowAttached,
    AgentWorkflowDetached,
)
from .state import CONFIG_FIELDS, Agent, AgentConfig, AttachedWorkflow

MAX_TOKENS_LIMIT = 1_000_000


def decide(command: AgentCommand, state: Agent | None, catalogue: Catalogue) -> list[AgentEvent]:
    if isinstance(command, RegisterAgent):
        return _register(command, state, catalogue)
    if state is None:
        raise NotFound(f"agent {command.agent_id} does not exist")
    if isinstance(command, RetireAgent):
        if state.status == "retired":
            return []
        return [AgentRetired(name=state.config.name, workflows=state.workflows)]
    if isinstance(command, DetachWorkflow):
        # Allowed after retirement: detaching is how a failed publication is compensated.
        if not state.attached(command.workflow_id, command.version):
            return []
        return [AgentWorkflowDetached(workflow_id=command.workflow_id, version=command.version)]
    if state.status == "retired":
        raise Conflict(f"agent {state.id} is retired", details={"agent": "retired"})
    if isinstance(command, AttachWorkflow):
        if state.attached(command.workflow_id, command.version):
            return []
        return [AgentWorkflowAttached(workflow_id=command.workflow_id, version=command.version)]
    if isinstance(command, RestoreAgentVersion):
        return _restore(command, state, catalogue)
    return _reconfigure(command, state, catalogue)


def _register(
    command: RegisterAgent, state: Agent | None, catalogue: Catalogue
) -> list[AgentEvent]:
    config = AgentConfig(**command.model_dump(exclude={"agent_id"}))
    if state is not None:
        if state.config == validate_config(config, catalogue):
            return []  # the same registration again: already satisfied
        raise Conflict(f"agent {command.agent_id} already exists")
    config = validate_config(config, catalogue)
    return [AgentRegistered(**config.model_dump())]


def _reconfigure(command: ReconfigureAgent, state: Agent, catalogue: Catalogue) -> list[AgentEvent]:
    requested = command.model_dump(exclude={"agent_id"}, exclude_none=True)
    return _changes(state, state.config.model_copy(update=requested), catalogue)


def _restore(command: RestoreAgentVersion, state: Agent, catalogue: Catalogue) -> list[AgentEvent]:
    old = state.configs.get(command.config_version)
    if old is None:
        raise NotFound(
            f"agent {state.id} has no configuration version {command.config_version}",
            details={"version": command.config_version},
        )
    return _changes(state, old, catalogue, restored_from=command.config_version)


def _changes(
    state: Agent, wanted: AgentConfig, catalogue: Catalogue, restored_from: int | None = None
) -> list[AgentEvent]:
    merged = validate_config(wanted, catalogue)
    changes = {
        name: getattr(merged, name)
        for name in CONFIG_FIELDS
        if getattr(merged, name) != getattr(state.config, name)
    }
    if not changes:
        return []
    return [
        AgentReconfigured(
            config_version=state.config_version + 1, restored_from=restored_from, **changes
        )
    ]


def validate_config(config: AgentConfig, catalogue: Catalogue) -> AgentConfig:
    """Check the guards of DESIGN §4 against the catalogue. (The lengths, counts and characters
    of what a command carries are checked by its types, ``limits``; a configuration read back
    from old events is never held to them.)"""
    problems: dict[str, object] = {}
    if config.provider not in catalogue.providers:
        problems["provider"] = (
            f"unknown provider {config.provider!r}; choose one of {', '.join(catalogue.providers)}"
        )
    elif not catalogue.offers(config.provider, config.model):
        offered = ", ".join(catalogue.models[config.provider])
        problems["model"] = (
            f"model {config.model!r} is not offered by {config.provider}; choose one of {offered}"
        )
    else:
        upper = catalogue.max_temperature(config.provider)
        if not 0.0 <= config.temperature <= upper:
            problems["temperature"] = (
                f"temperature must be between 0 and {upper:g} for {config.provider}"
            )
    if not 0 < config.max_tokens <= MAX_TOKENS_LIMIT:
        problems["maxTokens"] = f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}"
    if problems:
        first = next(iter(problems.values()))
        raise ValidationFailed(str(first), details=problems)
    return config


# ---- evolution --------------------------------------------------------------------------------


def evolve(state: Agent | None, event: DomainEvent, aggregate_id: UUID) -> Agent | None:
    """Fold one fact into the state. Never raises: unknown events leave the state unchanged."""
    if isinstance(event, AgentRegistered):
        config = AgentConfig(**event.model_dump())
        return Agent(id=aggregate_id, config=config, version=1, configs={1: config})
    if state is None:
        return None
    update: dict[str, object] = {"version": state.version + 1}
    if isinstance(event, AgentReconfigured):
        changes = event.model_dump(exclude={"config_version", "restored_from"}, exclude_none=True)
        config = state.config.model_copy(update=changes)
        update |= {
            "config": config,
            "config_version": event.config_version,
            "configs": {**state.configs, event.config_version: config},
        }
    elif isinstance(event, AgentRetired):
        update |= {"status": "retired"}
    elif isinstance(event, AgentWorkflowAttached):
        attached = AttachedWorkflow(workflow_id=event.workflow_id, version=event.version)
        update |= {"workflows": (*state.workflows, attached)}
    elif isinstance(event, AgentWorkflowDetached):
        update |= {
            "workflows": tuple(
                w
                for w in state.workflows
                if (w.workflow_id, w.version) != (event.workflow_id, event.version)
            )
        }
    return state.model_copy(update=update)
