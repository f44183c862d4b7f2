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

    workflows: tuple[tuple[UUID, int], ...] = ()  # (workflow, version) it was attached to


def degrade_step(workflow: UUID, version: int) -> str:
    return f"degrade workflow {workflow} v{version}"


class AgentRetirement(Saga[Retirement]):
    name = "agent_retirement"
    description = "marks the workflows a retired agent was in as degraded"
    types = frozenset({"agent.retired"})
    state_type = Retirement

    def key(self, envelope: Envelope) -> str | None:
        return envelope.aggregate_key

    def decide(
        self, current: Instance[Retirement] | None, message: Message, now: datetime
    ) -> Decision[Retirement] | None:
        if isinstance(message, Refused):
            if current is None:
                return None
            failed = current.step(message.command.step, "FAILED", now, message.error)
            return Decision(replace(failed, status="FAILED", failure_reason=message.error))
        attached = tuple(
            dict.fromkeys(
                (UUID(w["workflow_id"]), int(w["version"]))
                for w in message.data.get("workflows", ())
            )
        )
        if current is not None or not attached:
            return None  # retired once; or used by no workflow: nothing to do
        instance = self.start(str(message.aggregate_id), message, Retirement(workflows=attached))
        commands: list[SagaCommand] = []
        for workflow, version in attached:  # each version: the published one and one publishing
            step = degrade_step(workflow, version)
            instance = instance.step(step, "DONE", now)
            commands.append(
                DegradeWorkflow(
                    step, workflow_id=workflow, agent_id=message.aggregate_id, version=version
                )
            )
        return Decision(replace(instance, status="COMPLETED"), commands)
