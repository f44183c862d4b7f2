"""The Agent aggregate: an LLM-backed agent's configuration, its lifecycle, its configuration
versions (restorable) and the workflow versions that use it (decider pattern)."""

from .commands import (
    AgentCommand,
    AttachWorkflow,
    DetachWorkflow,
    ReconfigureAgent,
    RegisterAgent,
    RestoreAgentVersion,
    RetireAgent,
)
from .decider import MAX_TOKENS_LIMIT, decide, evolve, validate_config
from .events import (
    AgentEvent,
    AgentReconfigured,
    AgentRegistered,
    AgentRetired,
    AgentWorkflowAttached,
    AgentWorkflowDetached,
)
from .state import CONFIG_FIELDS, Agent, AgentConfig, AttachedWorkflow

__all__ = [
    "CONFIG_FIELDS",
    "MAX_TOKENS_LIMIT",
    "Agent",
    "AgentCommand",
    "AgentConfig",
    "AgentEvent",
    "AgentReconfigured",
    "AgentRegistered",
    "AgentRetired",
    "AgentWorkflowAttached",
    "AgentWorkflowDetached",
    "AttachWorkflow",
    "AttachedWorkflow",
    "DetachWorkflow",
    "ReconfigureAgent",
    "RegisterAgent",
    "RestoreAgentVersion",
    "RetireAgent",
    "decide",
    "evolve",
    "validate_config",
]
