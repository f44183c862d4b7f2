"""The agent-retirement saga: ``agent.retired`` → each workflow version that uses the agent
(the retirement event lists them) gets ``workflow.degraded`` — the published one stays
published, marked degraded; one being published fails its publication (the publish saga sees
the degradation). One instance per retired agent."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ..store.envelope import Envelope
from .base import Decision, Instance, Message, Refused, Saga
from .commands import DegradeWorkflow, SagaCommand


class Retirement(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflows: tuple[UUID, ...] = ()


def degrade_step(workflow: UUID) -> str:
    return f"degrade workflow {workflow}"


class AgentRetirement(Saga[Retirement]):
    name = "agent_retirement"
    description = "marks the workflows a retired agent was in as degraded"
    types = frozenset({"agent.retired"})
    state_type = Retirement

    def key(self, envelope: Envelope) -> str | None:
        return str(envelope.aggregate_id)

    def decide(
        self, current: Instance[Retirement] | None, message: Message, now: datetime
    ) -> Decision[Retirement] | None:
        if isinstance(message, Refused):
            if current is None:
                return None
            failed = current.step(message.command.step, "FAILED", now, message.error)
            return Decision(replace(failed, status="FAILED", failure_reason=message.error))
        workflows = tuple(
            dict.fromkeys(UUID(w["workflow_id"]) for w in message.data.get("workflows", ()))
        )
        if current is not None or not workflows:
            return None  # retired once; or used by no workflow: nothing to do
        instance = self.start(str(message.aggregate_id), message, Retirement(workflows=workflows))
        commands: list[SagaCommand] = []
        for workflow in workflows:
            instance = instance.step(degrade_step(workflow), "DONE", now)
            commands.append(
                DegradeWorkflow(
                    degrade_step(workflow), workflow_id=workflow, agent_id=message.aggregate_id
                )
            )
        return Decision(replace(instance, status="COMPLETED"), commands)
