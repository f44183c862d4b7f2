"""The saga contract (STYLE 15): a saga is a decider over the log.

A saga type has *instances* (one per workflow, per API key, …), each named by the ordering key
of the events that concern it. For every such event, and for every command of its own that was
refused, ``decide`` gets the instance as it stands and returns the instance as it is now and the
commands to send. Nothing else: no I/O, no clock of its own (``now`` is given), no ids of its own
(a command's id derives from the saga, the event that triggered it and its step, so redelivery,
a crash before the commit, or a replay of the log never acts twice). The runtime
(``runtime.py``) sends the commands and writes the instance in the consumer's transaction, with
its tracking position: all of it commits, or none.

Timers are commands too (``ScheduleTimer``, ``CancelTimer``): their events are in the log, and
a fired timer comes back as a ``timer.fired`` event like any other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import ClassVar, Generic, Literal, Self, TypeVar
from uuid import UUID

from pydantic import BaseModel

from ..services.workflows import WorkflowService
from ..store.envelope import Envelope
from .commands import SagaCommand

SagaStatus = Literal["RUNNING", "WAITING", "COMPLETED", "COMPENSATED", "FAILED"]
StepStatus = Literal["PENDING", "WAITING", "DONE", "FAILED", "COMPENSATED", "CANCELLED"]
# PARKED is not decided by a saga: an instance is PARKED while the consumer holds an event of
# its key parked (see ``instances.py``).

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Step:
    name: str
    status: StepStatus
    at: datetime | None = None  # when it last changed
    error: str | None = None


@dataclass(frozen=True)
class Instance(Generic[S]):
    """One saga instance: what the runtime stores (``saga_instances``) and shows."""

    saga: str
    id: str
    status: SagaStatus
    correlation_id: UUID
    started_position: int
    state: S
    steps: tuple[Step, ...] = ()
    failure_reason: str | None = None
    next_timer_at: datetime | None = None

    def step(self, name: str, status: StepStatus, at: datetime, error: str | None = None) -> Self:
        """The instance with step ``name`` set to ``status`` (added at the end if new)."""
        new = Step(name, status, at, error)
        if any(s.name == name for s in self.steps):
            steps = tuple(new if s.name == name else s for s in self.steps)
        else:
            steps = (*self.steps, new)
        return replace(self, steps=steps)

    def status_of(self, name: str) -> StepStatus | None:
        return next((s.status for s in self.steps if s.name == name), None)


@dataclass(frozen=True)
class Refused:
    """A command of this instance that its aggregate refused (a rule, not an outage): the saga
    decides what follows — usually compensation."""

    command: SagaCommand
    error: str
    trigger: Envelope  # the event whose decision sent it


Message = Envelope | Refused


@dataclass(frozen=True)
class Decision(Generic[S]):
    instance: Instance[S]
    commands: Sequence[SagaCommand] = field(default_factory=tuple)


class Saga(ABC, Generic[S]):
    """One saga type. ``name`` is its handler's name (its tracking row, its parked events'
    handler) and the ``type`` GraphQL and the CLI show; its commands' actor is
    ``saga:<name>``."""

    name: ClassVar[str]
    types: ClassVar[frozenset[str]]
    state_type: type[S]
    description: ClassVar[str] = ""

    def wants(self, envelope: Envelope) -> bool:
        return envelope.type in self.types and self.key(envelope) is not None

    @abstractmethod
    def key(self, envelope: Envelope) -> str | None:
        """The instance an event concerns (None: not this saga's)."""

    @abstractmethod
    def decide(
        self, current: Instance[S] | None, message: Message, now: datetime
    ) -> Decision[S] | None:
        """The instance after ``message`` and what to send; None: nothing to do (and no
        instance is created). ``now`` is the time of the event that triggered it (also for a
        refusal), so the same log always decides the same."""

    def abort(
        self, current: Instance[S] | None, key: str, workflows: WorkflowService
    ) -> list[SagaCommand]:
        """What an operator's ``lightning sagas abort`` sends (as the operator) to stop this
        instance and undo what it did; the saga then sees the resulting events like any.
        Nothing by default: a saga with nothing pending has nothing to abort."""
        del current, key, workflows
        return []

    def start(self, key: str, envelope: Envelope, state: S) -> Instance[S]:
        """A new instance, started by ``envelope``."""
        return Instance(
            saga=self.name,
            id=key,
            status="RUNNING",
            correlation_id=envelope.correlation_id,
            started_position=envelope.position,
            state=state,
        )
