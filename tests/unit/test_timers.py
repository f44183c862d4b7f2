"""Durable timers (DESIGN §4): given events, when command, then events or error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lightning.domain import timers
from lightning.domain.errors import Conflict, NotFound
from lightning.domain.timers import (
    CancelTimer,
    FireTimer,
    ScheduleTimer,
    TimerCancelled,
    TimerFired,
    TimerScheduled,
    timer_id,
)

from .given import given

DUE = datetime(2026, 11, 25, 12, tzinfo=UTC)
SCHEDULE = ScheduleTimer(saga="key_lifecycle", instance="k1", step="grace", due_at=DUE)
TIMER = SCHEDULE.timer_id
SCHEDULED = TimerScheduled(saga="key_lifecycle", instance="k1", step="grace", due_at=DUE)


def when(history: list[timers.TimerEvent], command: timers.TimerCommand) -> list[timers.TimerEvent]:
    return timers.decide(command, given(history, lambda s, e: timers.evolve(s, e, TIMER)))


def test_a_timers_id_is_what_it_is_for() -> None:
    assert timer_id("key_lifecycle", "k1", "grace") == TIMER
    assert timer_id("key_lifecycle", "k1", "expiry") != TIMER


def test_given_nothing_when_scheduled_then_scheduled_and_again_changes_nothing() -> None:
    assert when([], SCHEDULE) == [SCHEDULED]
    assert when([SCHEDULED], SCHEDULE) == []
    with pytest.raises(Conflict):
        when([SCHEDULED], SCHEDULE.model_copy(update={"due_at": DUE + timedelta(hours=1)}))


def test_given_scheduled_when_fired_before_its_time_then_refused() -> None:
    with pytest.raises(Conflict, match="not due"):
        when([SCHEDULED], FireTimer(timer_id=TIMER, at=DUE - timedelta(seconds=1)))


def test_given_scheduled_when_fired_at_or_after_its_time_then_fired_once() -> None:
    fired = when([SCHEDULED], FireTimer(timer_id=TIMER, at=DUE + timedelta(days=3)))
    # the time it was due, however late it fires, and what it is for (its saga acts on it alone)
    assert fired == [TimerFired(due_at=DUE, saga="key_lifecycle", instance="k1", step="grace")]
    assert when([SCHEDULED, *fired], FireTimer(timer_id=TIMER, at=DUE)) == []
    assert when([SCHEDULED, *fired], CancelTimer(timer_id=TIMER)) == []


def test_given_scheduled_when_cancelled_then_it_never_fires() -> None:
    cancelled = when([SCHEDULED], CancelTimer(timer_id=TIMER))
    assert cancelled == [TimerCancelled(saga="key_lifecycle", instance="k1", step="grace")]
    assert when([SCHEDULED, *cancelled], FireTimer(timer_id=TIMER, at=DUE)) == []


def test_given_nothing_when_fired_then_not_found() -> None:
    with pytest.raises(NotFound):
        when([], FireTimer(timer_id=TIMER, at=DUE))
