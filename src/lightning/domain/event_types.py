"""Event-type patterns: one grammar everywhere (subscriptions, webhooks, CLI filters, queries).

A pattern is an exact type (``agent.retired``), every type of one aggregate (``agent.*``) or
every public type (``*``). Anything else (``a*``, ``agent.re*``) is refused. The internal
aggregates ``timer`` and ``consumer`` match only when named (``timer.*``,
``consumer.event_skipped``), never through ``*``. No patterns at all means no filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import ValidationFailed

MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 100
INTERNAL_AGGREGATES = frozenset({"timer", "consumer"})

_NAME = r"[a-z][a-z0-9_]*"
_EXACT = re.compile(rf"^{_NAME}\.{_NAME}$")
_PREFIX = re.compile(rf"^({_NAME})\.\*$")


def aggregate_of(event_type: str) -> str:
    return event_type.partition(".")[0]


@dataclass(frozen=True)
class TypeFilter:
    """A parsed list of patterns; ``matches`` decides for one event type."""

    exact: frozenset[str] = frozenset()
    aggregates: frozenset[str] = frozenset()  # from ``<aggregate>.*``
    public: bool = False  # ``*``

    @classmethod
    def parse(cls, patterns: Sequence[str] | None, *, field: str = "types") -> TypeFilter | None:
        """The filter for ``patterns``; None when there are none (everything passes)."""
        if not patterns:
            return None
        if len(patterns) > MAX_PATTERNS:
            raise ValidationFailed(
                f"{field} takes at most {MAX_PATTERNS} patterns",
                details={field: f"{len(patterns)} patterns"},
            )
        exact: set[str] = set()
        aggregates: set[str] = set()
        public = False
        for pattern in patterns:
            if pattern == "*":
                public = True
            elif len(pattern) <= MAX_PATTERN_LENGTH and _EXACT.match(pattern):
                exact.add(pattern)
            elif len(pattern) <= MAX_PATTERN_LENGTH and (prefix := _PREFIX.match(pattern)):
                aggregates.add(prefix.group(1))
            else:
                raise ValidationFailed(
                    f"{pattern[:MAX_PATTERN_LENGTH]!r} is not an event-type pattern: use an exact"
                    " type (agent.retired), every type of an aggregate (agent.*) or * (every"
                    " public type)",
                    details={field: pattern[:MAX_PATTERN_LENGTH]},
                )
        return cls(frozenset(exact), frozenset(aggregates), public)

    def matches(self, event_type: str) -> bool:
        if event_type in self.exact:
            return True
        aggregate = aggregate_of(event_type)
        if aggregate in self.aggregates:
            return True
        return self.public and aggregate not in INTERNAL_AGGREGATES

    def among(self, known: Iterable[str]) -> list[str]:
        """The known types this filter accepts, plus the exact types it names (known or not):
        what a store query filtered by exact types must ask for."""
        return sorted({t for t in known if self.matches(t)} | self.exact)


def matches(patterns: TypeFilter | None, event_type: str) -> bool:
    return patterns is None or patterns.matches(event_type)
