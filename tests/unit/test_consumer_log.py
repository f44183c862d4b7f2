"""Skipping parked events is recorded once per (handler, position)."""

from lightning.domain import consumers
from lightning.domain.consumers import EventSkipped, SkipLog, SkipParked, SkippedEvent

A = SkippedEvent(handler="agents", aggregate="a", position=7)
B = SkippedEvent(handler="agents", aggregate="a", position=9)


def state_after(*events: EventSkipped) -> SkipLog:
    state = SkipLog()
    for event in events:
        state = consumers.evolve(state, event)
    return state


def skipped(event: SkippedEvent, reason: str = "") -> EventSkipped:
    return EventSkipped(
        consumer="projections",
        handler=event.handler,
        aggregate=event.aggregate,
        position=event.position,
        reason=reason,
    )


def test_given_nothing_skipped_when_skip_then_one_fact_per_event() -> None:
    command = SkipParked(consumer="projections", events=(A, B), reason="bad data")
    assert consumers.decide(command, state_after()) == [
        skipped(A, "bad data"),
        skipped(B, "bad data"),
    ]


def test_given_skipped_when_skip_again_then_nothing_new() -> None:
    command = SkipParked(consumer="projections", events=(A, B))
    assert consumers.decide(command, state_after(skipped(A))) == [skipped(B)]
    assert consumers.decide(command, state_after(skipped(A), skipped(B))) == []


def test_the_same_event_twice_in_one_command_is_recorded_once() -> None:
    command = SkipParked(consumer="projections", events=(A, A))
    assert consumers.decide(command, state_after()) == [skipped(A)]


def test_one_stream_per_consumer_kind() -> None:
    assert consumers.stream_id("projections") == consumers.stream_id("projections")
    assert consumers.stream_id("projections") != consumers.stream_id("sagas")
