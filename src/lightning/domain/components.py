"""The component registry: the kinds of node a workflow graph may hold, each with the config it
takes and the ports it offers. A node's config is validated by its kind's model (unknown fields
refused); edges connect an output port of one node to an input port of another."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ValidationFailed
from .limits import Description, Name, ToolName

IN, OUT = "in", "out"


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class AgentConfig(_Config):
    """Runs one agent; the agent must be active when the workflow is published."""

    agent_id: UUID = Field(alias="agentId")


class ToolConfig(_Config):
    """Calls one of the tools an agent may use, by name."""

    name: ToolName


class RouterConfig(_Config):
    """Sends its input down one of its routes: each route is an output port."""

    routes: tuple[Name, ...] = Field(min_length=1, max_length=20)


class HumanReviewConfig(_Config):
    """Waits for a person: the work goes on through ``approved`` or ``rejected``."""

    instructions: Description = ""


@dataclass(frozen=True)
class Component:
    kind: str
    config: type[_Config]
    inputs: Callable[[_Config], tuple[str, ...]]
    outputs: Callable[[_Config], tuple[str, ...]]

    def parse(self, config: Mapping[str, object]) -> _Config:
        try:
            return self.config.model_validate(config)
        except ValidationError as exc:
            problem = exc.errors(include_input=False)[0]
            where = ".".join(map(str, problem["loc"])) or "config"
            raise ValidationFailed(
                f"a {self.kind} node's config: {where}: {problem['msg']}",
                details={"config": where},
            ) from None


def _one(port: str) -> Callable[[_Config], tuple[str, ...]]:
    return lambda _: (port,)


def _routes(config: _Config) -> tuple[str, ...]:
    assert isinstance(config, RouterConfig)
    return config.routes


COMPONENTS: dict[str, Component] = {
    c.kind: c
    for c in (
        Component("agent", AgentConfig, _one(IN), _one(OUT)),
        Component("tool", ToolConfig, _one(IN), _one(OUT)),
        Component("router", RouterConfig, _one(IN), _routes),
        Component("human_review", HumanReviewConfig, _one(IN), lambda _: ("approved", "rejected")),
    )
}


def component(kind: str) -> Component:
    found = COMPONENTS.get(kind)
    if found is None:
        raise ValidationFailed(
            f"unknown node kind {kind[:40]!r}; choose one of {', '.join(COMPONENTS)}",
            details={"kind": "unknown"},
        )
    return found
