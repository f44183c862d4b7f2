"""The durable timer scheduler on both backends: timers are events; the index follows the log
through the consumer mechanism; what is due fires exactly once, also what came due while
nothing ran and when two schedulers race."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

from lightning.bootstrap import Lightning
from lightning.consumers import Consumer, run_to_head
from lightning.consumers.timers import PendingTimers, Scheduler
from lightning.services import SYSTEM, Context
from lightning.services.timers import TimerService


def index(app: Lightning) -> Consumer:
    return Consumer("sagas", [PendingTimers()], app.consumers.tracking, app.store)


def fired(app: Lightning) -> list[UUID]:
    return [e.aggregate_id for e in app.store.iterate(0) if e.type == "timer.fired"]


def scheduler(app: Lightning, timers: TimerService, **kwargs: object) -> Scheduler:
    def fire(timer: UUID, _due: datetime) -> None:
        timers.fire(Context(SYSTEM), timer)

    return Scheduler(app.store.backend, fire, **kwargs)  # type: ignore[arg-type]


def test_a_timer_that_came_due_while_nothing_ran_fires_once(lightning: Lightning) -> None:
    timers = TimerService(lightning.store)
    past = datetime.now(UTC) - timedelta(hours=1)
    due = timers.schedule(Context(SYSTEM), saga="test", instance="a", step="s", due_at=past)
    later = datetime.now(UTC) + timedelta(hours=1)
    timers.schedule(Context(SYSTEM), saga="test", instance="b", step="s", due_at=later)
    consumer = index(lightning)
    run_to_head(consumer)
    clock = scheduler(lightning, timers)
    assert clock.fire_due() == 1
    assert fired(lightning) == [due.timer.id]  # type: ignore[union-attr]
    clock.fire_due()  # the index has not caught up yet: firing again changes nothing
    assert fired(lightning) == [due.timer.id]  # type: ignore[union-attr]
    run_to_head(consumer)
    assert clock.fire_due() == 0
    assert clock.next_due() is not None and clock.next_due() > datetime.now(UTC)  # type: ignore[operator]


def test_two_schedulers_racing_fire_each_timer_once(lightning: Lightning) -> None:
    timers = TimerService(lightning.store)
    past = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(20):
        timers.schedule(Context(SYSTEM), saga="test", instance=str(i), step="s", due_at=past)
    run_to_head(index(lightning))
    clocks = [scheduler(lightning, timers), scheduler(lightning, timers)]
    threads = [threading.Thread(target=c.fire_due) for c in clocks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fired(lightning)) == len(set(fired(lightning))) == 20


def test_a_cancelled_timer_leaves_the_index_and_never_fires(lightning: Lightning) -> None:
    timers = TimerService(lightning.store)
    past = datetime.now(UTC) - timedelta(seconds=1)
    result = timers.schedule(Context(SYSTEM), saga="test", instance="c", step="s", due_at=past)
    assert result.timer is not None
    timers.cancel(Context(SYSTEM), result.timer.id)
    run_to_head(index(lightning))
    assert scheduler(lightning, timers).fire_due() == 0
    assert fired(lightning) == []


def test_a_running_scheduler_fires_within_a_second_of_the_due_time(lightning: Lightning) -> None:
    timers = TimerService(lightning.store)
    due_at = datetime.now(UTC) + timedelta(seconds=1.5)
    timers.schedule(Context(SYSTEM), saga="test", instance="d", step="s", due_at=due_at)
    run_to_head(index(lightning))
    stop = threading.Event()
    clock = scheduler(lightning, timers)
    thread = threading.Thread(target=clock.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not fired(lightning) and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = datetime.now(UTC)
    finally:
        stop.set()
        clock.wake()
        thread.join()
    [event] = [e for e in lightning.store.iterate(0) if e.type == "timer.fired"]
    assert due_at <= event.occurred_at < due_at + timedelta(seconds=1)
    assert seen - due_at < timedelta(seconds=1.5)
