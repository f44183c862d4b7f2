"""Timer command handlers (load → decide → append): what sagas schedule and cancel, and what
the scheduler (``consumers/timers.py``) fires. Firing runs on the timer's own stream, so racing
schedulers collide on its version and the loser finds it fired: exactly once."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from ..domain import timers
from ..domain.messages import DomainEvent
from ..store.commands import CommandRecord
from ..store.event_store import Events
from .common import Context, Loaded, as_of, load, once, parse, retry_on_conflict, stamp


@dataclass(frozen=True)
class TimerResult:
    position: int
    timer: timers.Timer | None


def _fold(timer_id: UUID) -> Any:
    def evolve(state: timers.Timer | None, event: DomainEvent) -> timers.Timer | None:
        return timers.evolve(state, event, timer_id)

    return evolve


class TimerService:
    def __init__(self, store: Events) -> None:
        self.store = store

    def schedule(
        self,
        ctx: Context,
        *,
        saga: str,
        instance: str,
        step: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
    ) -> TimerResult:
        command = parse(
            timers.ScheduleTimer,
            saga=saga,
            instance=instance,
            step=step,
            due_at=due_at,
            payload=payload or {},
        )
        return self._handle(ctx, command.timer_id, command)

    def fire(self, ctx: Context, timer_id: UUID) -> TimerResult:
        """Fire a due timer. Its ``timer.fired`` continues the correlation of the command that
        scheduled it, caused by the ``timer.scheduled`` event."""
        scheduled = self.store.load(timer_id, limit=1)
        if scheduled:
            ctx = replace(
                ctx, correlation_id=scheduled[0].correlation_id, causation_id=scheduled[0].id
            )
        return self._handle(ctx, timer_id, timers.FireTimer(timer_id=timer_id, at=ctx.at))

    def cancel(self, ctx: Context, timer_id: UUID) -> TimerResult:
        return self._handle(ctx, timer_id, timers.CancelTimer(timer_id=timer_id))

    def get(self, timer_id: UUID) -> timers.Timer | None:
        return self._load(timer_id).state

    def _handle(self, ctx: Context, timer_id: UUID, command: timers.TimerCommand) -> TimerResult:
        return once(self.store, ctx, lambda: self._apply(ctx, timer_id, command), self._first)

    def _first(self, record: CommandRecord) -> TimerResult:
        envelopes = as_of(self.store, record)
        state = load(self.store, record.aggregate_id, _fold(record.aggregate_id), None, envelopes)
        return TimerResult(record.position, state.state)

    @retry_on_conflict
    def _apply(self, ctx: Context, timer_id: UUID, command: timers.TimerCommand) -> TimerResult:
        current = self._load(timer_id)
        events = timers.decide(command, current.state)
        if not events:
            position = current.envelopes[-1].position if current.envelopes else 0
            return TimerResult(position, current.state)
        envelopes = stamp(ctx, timer_id, current.version, events)
        stored = self.store.append(envelopes, command=ctx.claim(timer_id))
        state = load(self.store, timer_id, _fold(timer_id), None, current.envelopes + stored).state
        return TimerResult(stored[-1].position, state)

    def _load(self, timer_id: UUID) -> Loaded[timers.Timer | None]:
        return load(self.store, timer_id, _fold(timer_id), None)
