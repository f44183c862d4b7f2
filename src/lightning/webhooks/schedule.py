"""When a failed attempt is tried again: the retry schedule (operational state, DESIGN §1),
its jitter, and a receiver's ``Retry-After``."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ..domain.errors import ValidationFailed

# Standard Webhooks' example schedule: after the first attempt, 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h and 10 h (eight attempts in all, over about 27 hours).
DEFAULT_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
MAX_RETRY_AFTER = 24 * 3600.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_STEP = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m,30m"`` → seconds; at most 20 retries, each at most 7 days."""
    steps = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = _STEP.match(part)
        if match is None:
            raise ValidationFailed(
                f"retry schedule step {part!r}: write a number and a unit (ms, s, m, h, d)"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if not 0.001 <= seconds <= 7 * 86400:
            raise ValidationFailed(f"retry schedule step {part!r}: between 1 ms and 7 days")
        steps.append(seconds)
    if len(steps) > 20:
        raise ValidationFailed("a retry schedule has at most 20 steps")
    return tuple(steps)


@dataclass(frozen=True)
class Schedule:
    delays: tuple[float, ...]
    jitter: float = 0.1  # each delay is drawn from ±10 % of the schedule's

    @property
    def attempts(self) -> int:
        """Attempts in one round: the first and one per step."""
        return len(self.delays) + 1

    def next_delay(self, attempts_made: int, retry_after: float | None = None) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` in this round, None when the
        round is over. A receiver's Retry-After (on 429 or 503) is honoured instead of the
        schedule's step (up to a day)."""
        if not 0 < attempts_made < self.attempts:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        delay = self.delays[attempts_made - 1]
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdecimal():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
