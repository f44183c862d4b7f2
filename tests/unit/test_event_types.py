"""The one event-type pattern grammar (DESIGN §4)."""

import pytest

from lightning.domain.errors import ValidationFailed
from lightning.domain.event_types import MAX_PATTERNS, TypeFilter, matches

KNOWN = ["agent.registered", "agent.retired", "agent_name.reserved", "consumer.event_skipped"]


def test_no_patterns_is_no_filter() -> None:
    assert TypeFilter.parse(None) is None and TypeFilter.parse([]) is None
    assert matches(None, "consumer.event_skipped")


def test_exact_type() -> None:
    types = TypeFilter.parse(["agent.retired"])
    assert types is not None
    assert types.matches("agent.retired") and not types.matches("agent.registered")


def test_every_type_of_one_aggregate_and_nothing_that_only_shares_a_prefix() -> None:
    types = TypeFilter.parse(["agent.*"])
    assert types is not None
    assert types.matches("agent.registered") and types.matches("agent.retired")
    assert not types.matches("agent_name.reserved")


def test_star_is_every_public_type_and_internal_ones_only_by_name() -> None:
    star = TypeFilter.parse(["*"])
    assert star is not None
    assert star.matches("agent.registered") and star.matches("api_key.revoked")
    assert not star.matches("consumer.event_skipped") and not star.matches("timer.fired")
    named = TypeFilter.parse(["*", "consumer.*", "timer.fired"])
    assert named is not None
    assert named.matches("consumer.event_skipped") and named.matches("timer.fired")
    assert not named.matches("timer.scheduled")


@pytest.mark.parametrize(
    "pattern",
    [
        "a*",
        "agent.re*",
        "agent",
        "agent.",
        ".retired",
        "Agent.Retired",
        "agent.*.*",
        "**",
        "",
        "agent.retired ",
        "agent-x.y",
        "x." + "y" * 200,
        "agent.\x00",
    ],
)
def test_anything_else_is_refused(pattern: str) -> None:
    with pytest.raises(ValidationFailed, match="not an event-type pattern"):
        TypeFilter.parse([pattern])


def test_at_most_twenty_patterns() -> None:
    TypeFilter.parse(["agent.*"] * MAX_PATTERNS)
    with pytest.raises(ValidationFailed, match="at most 20"):
        TypeFilter.parse(["agent.*"] * (MAX_PATTERNS + 1))


def test_among_known_types_keeps_named_unknown_ones() -> None:
    types = TypeFilter.parse(["agent.*", "workflow.published"])
    assert types is not None
    assert types.among(KNOWN) == ["agent.registered", "agent.retired", "workflow.published"]
    star = TypeFilter.parse(["*"])
    assert star is not None and "consumer.event_skipped" not in star.among(KNOWN)
