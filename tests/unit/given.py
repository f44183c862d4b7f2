"""A tiny given/when/then helper for deciders."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

S = TypeVar("S")


def given(
    events: Sequence[Any], evolve: Callable[[S | None, Any], S | None], initial: S | None = None
) -> S | None:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state
