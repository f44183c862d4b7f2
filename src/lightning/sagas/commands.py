"""What sagas may ask for, and the dispatcher that sends it through the services.

A saga's command names its ``step``: with the saga and the triggering event it derives the
command's id (``command_id``), which the store records with the command's events, so the same
step of the same trigger is applied once however often it is decided again (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from ..domain.catalogue import Catalogue
from ..domain.timers import timer_id
from ..services.agents import AgentService
from ..services.api_keys import ApiKeyService
from ..services.common import Context
from ..services.timers import TimerService
from ..services.workflows import WorkflowService
from ..store.event_store import Events
from ..store.secrets import SecretVault

_COMMAND_IDS = UUID("3d6f0b8e-2c41-4f7a-9e55-7a1c0d9b4e21")


def command_id(saga: str, trigger: UUID, step: str) -> UUID:
    """The id of ``step`` of ``saga`` as caused by the event ``trigger``."""
    return uuid5(_COMMAND_IDS, f"{saga}\x1f{trigger}\x1f{step}")


@dataclass(frozen=True)
class SagaCommand:
    step: str


@dataclass(frozen=True)
class AttachWorkflow(SagaCommand):
    agent_id: UUID
    workflow_id: UUID
    version: int


@dataclass(frozen=True)
class DetachWorkflow(SagaCommand):
    agent_id: UUID
    workflow_id: UUID
    version: int


@dataclass(frozen=True)
class CompletePublish(SagaCommand):
    workflow_id: UUID
    version: int


@dataclass(frozen=True)
class FailPublish(SagaCommand):
    workflow_id: UUID
    version: int
    reason: str


@dataclass(frozen=True)
class DegradeWorkflow(SagaCommand):
    workflow_id: UUID
    agent_id: UUID
    version: int


@dataclass(frozen=True)
class RetirePreviousSecret(SagaCommand):
    key_id: UUID
    cycle: int


@dataclass(frozen=True)
class ExpireApiKey(SagaCommand):
    key_id: UUID


@dataclass(frozen=True)
class NoteRotationDue(SagaCommand):
    key_id: UUID
    cycle: int
    due_at: datetime


@dataclass(frozen=True)
class RotateByPolicy(SagaCommand):
    key_id: UUID
    cycle: int


@dataclass(frozen=True)
class ScheduleTimer(SagaCommand):
    """A timer for this instance, named by the step it is for: fired, it comes back as a
    ``timer.fired`` event with that step."""

    due_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class CancelTimer(SagaCommand):
    """Cancel the timer scheduled for ``timer_step`` (this command's own step differs)."""

    timer_step: str


class Dispatcher:
    """Sends saga commands through the services, on the event store it is given (the
    consumer's ``EventSession``). A refusal raises the service's domain error."""

    def __init__(
        self, events: Events, catalogue: Catalogue, vault: SecretVault | None = None
    ) -> None:
        self.agents = AgentService(events, catalogue)
        self.workflows = WorkflowService(events)
        self.keys = ApiKeyService(events, vault=vault)
        self.timers = TimerService(events)

    def send(self, ctx: Context, saga: str, instance: str, command: SagaCommand) -> int:
        """Apply ``command``; the position of its result."""
        match command:
            case AttachWorkflow(agent_id=a, workflow_id=w, version=v):
                return self.agents.attach_workflow(ctx, a, w, v).position
            case DetachWorkflow(agent_id=a, workflow_id=w, version=v):
                return self.agents.detach_workflow(ctx, a, w, v).position
            case CompletePublish(workflow_id=w, version=v):
                return self.workflows.complete_publish(ctx, w, v).position
            case FailPublish(workflow_id=w, version=v, reason=reason):
                return self.workflows.fail_publish(ctx, w, v, reason).position
            case DegradeWorkflow(workflow_id=w, agent_id=a, version=v):
                return self.workflows.degrade(ctx, w, a, v).position
            case RetirePreviousSecret(key_id=k, cycle=n):
                return self.keys.retire_previous_secret(ctx, k, cycle=n).position
            case ExpireApiKey(key_id=k):
                return self.keys.expire(ctx, k).position
            case NoteRotationDue(key_id=k, cycle=n, due_at=due):
                return self.keys.note_rotation_due(ctx, k, cycle=n, due_at=due).position
            case RotateByPolicy(key_id=k, cycle=n):
                return self.keys.rotate_by_policy(ctx, k, cycle=n).position
            case ScheduleTimer(step=step, due_at=due, payload=payload):
                return self.timers.schedule(
                    ctx, saga=saga, instance=instance, step=step, due_at=due, payload=payload
                ).position
            case CancelTimer(timer_step=step):
                return self.timers.cancel(ctx, timer_id(saga, instance, step)).position
        raise TypeError(f"no handler for saga command {type(command).__name__}")
