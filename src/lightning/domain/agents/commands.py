"""What may be asked of an agent."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from ..limits import Description, Name, SystemPrompt, Tools
from ..messages import Command


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


class RestoreAgentVersion(Command):
    """A new configuration version equal to an earlier one."""

    agent_id: UUID
    config_version: int = Field(ge=1, lt=2**62)


class AttachWorkflow(Command):
    agent_id: UUID
    workflow_id: UUID
    version: int = Field(ge=1, lt=2**62)


class DetachWorkflow(Command):
    agent_id: UUID
    workflow_id: UUID
    version: int = Field(ge=1, lt=2**62)


AgentCommand = (
    RegisterAgent
    | ReconfigureAgent
    | RetireAgent
    | RestoreAgentVersion
    | AttachWorkflow
    | DetachWorkflow
)
