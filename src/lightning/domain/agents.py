"""The Agent aggregate: an LLM-backed agent's configuration and lifecycle (decider pattern)."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .catalogue import Catalogue
from .errors import Conflict, NotFound, ValidationFailed
from .limits import Description, Name, SystemPrompt, Tools
from .messages import Command, DomainEvent

MAX_TOKENS_LIMIT = 1_000_000


class AgentEvent(DomainEvent):
    aggregate_type = "agent"


# ---- events -----------------------------------------------------------------------------------


class AgentRegistered(AgentEvent):
    type = "agent.registered"

    name: str
    description: str
    provider: str
    model: str
    temperature: float
    max_tokens: int
    system_prompt: str
    tools: tuple[str, ...]


class AgentReconfigured(AgentEvent):
    """Only the fields that changed are set; ``config_version`` is the new version."""

    type = "agent.reconfigured"

    config_version: int
    name: str | None = None
    description: str | None = None
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    tools: tuple[str, ...] | None = None


class AgentRetired(AgentEvent):
    type = "agent.retired"

    name: str


# ---- commands ---------------------------------------------------------------------------------


class RegisterAgent(Command):
    agent_id: UUID
    name: Name
    description: Description = ""
    provider: str = Field(max_length=100)
    model: str = Field(max_length=200)
    temperature: float = 0.7
    max_tokens: int = 4096
    system_prompt: SystemPrompt = ""
    tools: Tools = ()


class ReconfigureAgent(Command):
    agent_id: UUID
    name: Name | None = None
    description: Description | None = None
    provider: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: SystemPrompt | None = None
    tools: Tools | None = None


class RetireAgent(Command):
    agent_id: UUID


# ---- state ------------------------------------------------------------------------------------


class AgentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    provider: str
    model: str
    temperature: float
    max_tokens: int
    system_prompt: str = ""
    tools: tuple[str, ...] = ()


CONFIG_FIELDS: tuple[str, ...] = tuple(AgentConfig.model_fields)


class Agent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    config: AgentConfig
    status: Literal["active", "retired"] = "active"
    config_version: int = 1
    version: int = Field(default=0, description="number of events folded")


# ---- decisions --------------------------------------------------------------------------------


def decide(
    command: RegisterAgent | ReconfigureAgent | RetireAgent,
    state: Agent | None,
    catalogue: Catalogue,
) -> list[AgentEvent]:
    if isinstance(command, RegisterAgent):
        return _register(command, state, catalogue)
    if state is None:
        raise NotFound(f"agent {command.agent_id} does not exist")
    if isinstance(command, RetireAgent):
        return [] if state.status == "retired" else [AgentRetired(name=state.config.name)]
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
    if state.status == "retired":
        raise Conflict(f"agent {state.id} is retired and can't be reconfigured")
    requested = command.model_dump(exclude={"agent_id"}, exclude_none=True)
    merged = validate_config(state.config.model_copy(update=requested), catalogue)
    changes = {
        name: getattr(merged, name)
        for name in CONFIG_FIELDS
        if getattr(merged, name) != getattr(state.config, name)
    }
    if not changes:
        return []
    return [AgentReconfigured(config_version=state.config_version + 1, **changes)]


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
        return Agent(id=aggregate_id, config=config, version=1)
    if state is None:
        return None
    if isinstance(event, AgentReconfigured):
        changes = event.model_dump(exclude={"config_version"}, exclude_none=True)
        return state.model_copy(
            update={
                "config": state.config.model_copy(update=changes),
                "config_version": event.config_version,
                "version": state.version + 1,
            }
        )
    if isinstance(event, AgentRetired):
        return state.model_copy(update={"status": "retired", "version": state.version + 1})
    return state.model_copy(update={"version": state.version + 1})
