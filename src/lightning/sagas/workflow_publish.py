"""The workflow publish saga (DESIGN §5): one instance per workflow.

``workflow.publish_requested`` → attach the version to each agent it uses, one at a time in
graph order (each ``agent.workflow_attached`` sends the next) → ``workflow.published``. If a step
is refused — an agent retired, missing, or retired meanwhile (``workflow.degraded`` for the
version being published, or the completion refused for it) — every agent attached so far is
detached (``agent.workflow_detached``) and ``workflow.publish_failed`` records the reason. Once
published, the version it replaces is detached from that version's agents; an archived
workflow's published version is detached from its agents too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from ..services.workflows import WorkflowService
from ..store.envelope import Envelope
from .base import Decision, Instance, Message, Refused, Saga
from .commands import (
    AttachWorkflow,
    CompletePublish,
    DetachWorkflow,
    FailPublish,
    SagaCommand,
)

Phase = Literal["attaching", "completing", "completed", "failed"]


class Publication(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int
    agents: tuple[UUID, ...]  # in graph order
    attached: tuple[UUID, ...] = ()
    phase: Phase = "attaching"


def attach_step(agent: UUID) -> str:
    return f"attach agent {agent}"


def detach_step(agent: UUID, version: int) -> str:
    return f"detach version {version} from agent {agent}"


PUBLISH_STEP = "publish"
FAIL_STEP = "record the failure"


class WorkflowPublish(Saga[Publication]):
    name = "workflow_publish"
    description = "attaches a requested workflow version to its agents, then publishes it"
    types = frozenset(
        {
            "workflow.publish_requested",
            "workflow.published",
            "workflow.publish_failed",
            "workflow.degraded",
            "workflow.archived",
            "agent.workflow_attached",
        }
    )
    state_type = Publication

    def key(self, envelope: Envelope) -> str | None:
        if envelope.aggregate_type == "agent":
            return str(envelope.data.get("workflow_id", "")) or None
        return envelope.aggregate_key

    def decide(
        self, current: Instance[Publication] | None, message: Message, now: datetime
    ) -> Decision[Publication] | None:
        if isinstance(message, Refused):
            return None if current is None else self._refused(current, message, now)
        if message.type == "workflow.publish_requested":
            return self._requested(message, now)
        if current is None:
            return None  # not a publication this saga ran (archived before any publish, say)
        version = message.data.get("version")
        if message.type == "workflow.archived":
            return self._archived(current, message, now)
        if version != current.state.version:
            return None  # an older publication's late event
        if message.type == "agent.workflow_attached":
            return self._attached(current, message.aggregate_id, now)
        if message.type == "workflow.published":
            return self._published(current, message, now)
        if message.type == "workflow.degraded":
            agent = message.data["agent_id"]
            return self._fail(current, f"agent {agent} was retired during the publication", now)
        return self._failed_elsewhere(current, str(message.data.get("reason", "")), now)

    # ---- the way forward ----------------------------------------------------------------------

    def _requested(self, event: Envelope, now: datetime) -> Decision[Publication]:
        workflow, version = event.aggregate_id, int(event.data["version"])
        state = Publication(version=version, agents=tuple(UUID(a) for a in event.data["agents"]))
        instance = self.start(str(workflow), event, state)
        for agent in state.agents:
            instance = instance.step(attach_step(agent), "PENDING", now)
        instance = instance.step(PUBLISH_STEP, "PENDING", now)
        return Decision(instance, [self._next(workflow, state)])

    def _attached(
        self, current: Instance[Publication], agent: UUID, now: datetime
    ) -> Decision[Publication] | None:
        state = current.state
        if agent in state.attached or agent not in state.agents:
            return None  # a redelivery
        if state.phase == "failed":
            # An attachment that landed after the publication failed (sent before the
            # failure was known, or by an attach racing an operator's abort): undo it too.
            step = detach_step(agent, state.version)
            detach = DetachWorkflow(
                step, agent_id=agent, workflow_id=UUID(current.id), version=state.version
            )
            return Decision(current.step(attach_step(agent), "COMPENSATED", now), [detach])
        if state.phase != "attaching":
            return None
        state = state.model_copy(update={"attached": (*state.attached, agent)})
        instance = current.step(attach_step(agent), "DONE", now)
        workflow = UUID(current.id)
        if len(state.attached) == len(state.agents):
            state = state.model_copy(update={"phase": "completing"})
        return Decision(replace(instance, state=state), [self._next(workflow, state)])

    def _next(self, workflow: UUID, state: Publication) -> SagaCommand:
        waiting = [a for a in state.agents if a not in state.attached]
        if not waiting:
            return CompletePublish(PUBLISH_STEP, workflow_id=workflow, version=state.version)
        return AttachWorkflow(
            attach_step(waiting[0]),
            agent_id=waiting[0],
            workflow_id=workflow,
            version=state.version,
        )

    def _published(
        self, current: Instance[Publication], event: Envelope, now: datetime
    ) -> Decision[Publication]:
        instance = current.step(PUBLISH_STEP, "DONE", now)
        state = current.state.model_copy(update={"phase": "completed"})
        commands: list[SagaCommand] = []
        for agent in event.data.get("superseded_agents", ()):
            superseded = int(event.data["superseded_version"])
            step = detach_step(UUID(agent), superseded)
            instance = instance.step(step, "DONE", now)
            commands.append(
                DetachWorkflow(
                    step, agent_id=UUID(agent), workflow_id=UUID(current.id), version=superseded
                )
            )
        done = replace(instance, state=state, status="COMPLETED", failure_reason=None)
        return Decision(done, commands)

    def _archived(
        self, current: Instance[Publication], event: Envelope, now: datetime
    ) -> Decision[Publication] | None:
        version = event.data.get("version")
        if version is None:
            return None
        instance, commands = current, []
        for agent in event.data.get("agents", ()):
            step = detach_step(UUID(agent), int(version))
            instance = instance.step(step, "DONE", now)
            commands.append(
                DetachWorkflow(
                    step, agent_id=UUID(agent), workflow_id=UUID(current.id), version=int(version)
                )
            )
        return Decision(instance, commands)

    def abort(
        self, current: Instance[Publication] | None, key: str, workflows: WorkflowService
    ) -> list[SagaCommand]:
        """Fail the pending publication; the saga, seeing ``workflow.publish_failed``, then
        detaches its version from every agent it uses. (Detaching before the failure is
        recorded could race the publication's completion and strip a published version.)"""
        pending = workflows.get(UUID(key)).pending
        if pending is None:
            return []
        reason = "aborted by an operator"
        return [
            FailPublish(FAIL_STEP, workflow_id=UUID(key), version=pending.version, reason=reason)
        ]

    # ---- failure and compensation -------------------------------------------------------------

    def _refused(
        self, current: Instance[Publication], refused: Refused, now: datetime
    ) -> Decision[Publication] | None:
        command = refused.command
        if isinstance(command, AttachWorkflow):
            return self._fail(
                current.step(command.step, "FAILED", now, refused.error), refused.error, now
            )
        if isinstance(command, CompletePublish):
            return self._fail(
                current.step(PUBLISH_STEP, "FAILED", now, refused.error), refused.error, now
            )
        # Compensation itself refused (the workflow gone, say): recorded, nothing more to try.
        instance = current.step(command.step, "FAILED", now, refused.error)
        return Decision(replace(instance, status="FAILED"))

    def _fail(
        self,
        current: Instance[Publication],
        reason: str,
        now: datetime,
        detach: tuple[UUID, ...] | None = None,
    ) -> Decision[Publication] | None:
        """Detach what was attached (latest first; or every agent in ``detach``), then record
        ``workflow.publish_failed``."""
        state = current.state
        if state.phase not in ("attaching", "completing"):
            return None  # failed already, or published
        workflow = UUID(current.id)
        commands: list[SagaCommand] = []
        instance = current
        for agent in reversed(state.attached if detach is None else detach):
            commands.append(
                DetachWorkflow(
                    detach_step(agent, state.version),
                    agent_id=agent,
                    workflow_id=workflow,
                    version=state.version,
                )
            )
        for agent in state.agents:
            done = instance.status_of(attach_step(agent)) == "DONE"
            if done or instance.status_of(attach_step(agent)) == "PENDING":
                instance = instance.step(
                    attach_step(agent), "COMPENSATED" if done else "CANCELLED", now
                )
        commands.append(
            FailPublish(FAIL_STEP, workflow_id=workflow, version=state.version, reason=reason)
        )
        instance = instance.step(FAIL_STEP, "DONE", now)
        if instance.status_of(PUBLISH_STEP) == "PENDING":
            instance = instance.step(PUBLISH_STEP, "CANCELLED", now)
        failed = replace(
            instance,
            state=state.model_copy(update={"phase": "failed"}),
            status="COMPENSATED" if state.attached else "FAILED",
            failure_reason=reason,
        )
        return Decision(failed, commands)

    def _failed_elsewhere(
        self, current: Instance[Publication], reason: str, now: datetime
    ) -> Decision[Publication] | None:
        """``workflow.publish_failed``: ours (nothing more to do), or an operator's abort:
        detach the version from every agent the publication uses — also one whose attachment
        this saga never saw (its event parked and skipped, or still to come); detaching one
        that is not attached changes nothing."""
        if current.state.phase == "failed":
            return None
        decision = self._fail(current, reason, now, detach=current.state.agents)
        if decision is None:
            return None
        # The failure is recorded already: only the detachments remain to be sent.
        commands = [c for c in decision.commands if not isinstance(c, FailPublish)]
        return Decision(decision.instance, commands)
