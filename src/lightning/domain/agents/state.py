"""An agent as its events leave it."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


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


class AttachedWorkflow(BaseModel):
    """A workflow version that uses the agent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: UUID
    version: int


class Agent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    config: AgentConfig
    status: Literal["active", "retired"] = "active"
    config_version: int = 1
    workflows: tuple[AttachedWorkflow, ...] = ()
    version: int = Field(default=0, description="number of events folded")
    # Every configuration version, for restoring one (not shown: the config is).
    configs: dict[int, AgentConfig] = Field(default_factory=dict, exclude=True)

    def attached(self, workflow_id: UUID, version: int) -> bool:
        return AttachedWorkflow(workflow_id=workflow_id, version=version) in self.workflows
