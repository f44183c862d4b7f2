"""Durable timers as events (DESIGN §1, §4): aggregate type ``timer``; ``timer.scheduled``,
``timer.fired``, ``timer.cancelled``. A timer's id derives from what it is for (the saga, its
instance and the step), so scheduling is idempotent; firing is a command on the timer's own
stream, so two schedulers racing to fire it collide on its version and it fires exactly once.
The scheduler that fires them lives in ``consumers/timers.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from .errors import Conflict, NotFound
from .messages import Command, DomainEvent

_NAMESPACE = UUID("0b7c9a52-8f0e-4c1d-9a6b-3e2f1d4c5b6a")


def timer_id(saga: str, instance: str, step: str) -> UUID:
    """The one timer of ``saga``'s ``instance`` for ``step``: asking again names the same."""
    return uuid5(_NAMESPACE, f"{saga}\x1f{instance}\x1f{step}")


class TimerEvent(DomainEvent):
    aggregate_type = "timer"


class TimerScheduled(TimerEvent):
    type = "timer.scheduled"

    saga: str
    instance: str
    step: str
    due_at: datetime
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class TimerFired(TimerEvent):
    """Carries what the timer was for, so the saga it belongs to can act on it alone."""

    type = "timer.fired"

    due_at: datetime
    saga: str = ""
    instance: str = ""
    step: str = ""
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class TimerCancelled(TimerEvent):
    type = "timer.cancelled"

    saga: str = ""
    instance: str = ""
    step: str = ""


class ScheduleTimer(Command):
    saga: str = Field(min_length=1, max_length=100)
    instance: str = Field(min_length=1, max_length=200)
    step: str = Field(min_length=1, max_length=100)
    due_at: AwareDatetime
    payload: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def timer_id(self) -> UUID:
        return timer_id(self.saga, self.instance, self.step)


class FireTimer(Command):
    timer_id: UUID
    at: AwareDatetime


class CancelTimer(Command):
    timer_id: UUID


TimerCommand = ScheduleTimer | FireTimer | CancelTimer


class Timer(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    saga: str
    instance: str
    step: str
    due_at: datetime
    payload: dict[str, JsonValue]
    status: Literal["scheduled", "fired", "cancelled"] = "scheduled"
    version: int = 1


def decide(command: TimerCommand, state: Timer | None) -> list[TimerEvent]:
    if isinstance(command, ScheduleTimer):
        if state is None:
            return [
                TimerScheduled(
                    saga=command.saga,
                    instance=command.instance,
                    step=command.step,
                    due_at=command.due_at,
                    payload=command.payload,
                )
            ]
        if (state.due_at, state.payload) == (command.due_at, command.payload):
            return []  # the same schedule again (a redelivered saga step)
        raise Conflict(f"timer {state.id} is already scheduled for {state.due_at.isoformat()}")
    if state is None:
        raise NotFound(f"timer {command.timer_id} does not exist")
    if state.status != "scheduled":
        return []  # fired or cancelled already: a timer ends once
    which = {"saga": state.saga, "instance": state.instance, "step": state.step}
    if isinstance(command, CancelTimer):
        return [TimerCancelled(**which)]
    if command.at < state.due_at:
        raise Conflict(f"timer {state.id} is not due until {state.due_at.isoformat()}")
    return [TimerFired(due_at=state.due_at, payload=state.payload, **which)]


def evolve(state: Timer | None, event: DomainEvent, aggregate_id: UUID) -> Timer | None:
    """Fold one fact into the state. Never raises: unknown events leave the state unchanged."""
    if isinstance(event, TimerScheduled):
        return Timer(id=aggregate_id, **event.model_dump())
    if state is None:
        return None
    update: dict[str, object] = {"version": state.version + 1}
    if isinstance(event, TimerFired):
        update["status"] = "fired"
    elif isinstance(event, TimerCancelled):
        update["status"] = "cancelled"
    return state.model_copy(update=update)
