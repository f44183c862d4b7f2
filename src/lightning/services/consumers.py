"""Consumer bookkeeping commands: recording an operator's skip of parked events."""

from __future__ import annotations

from collections.abc import Sequence

from ..domain import consumers
from ..store.event_store import Events
from .common import Context, load, parse, retry_on_conflict, stamp


class ConsumerLogService:
    def __init__(self, store: Events) -> None:
        self.store = store

    @retry_on_conflict
    def record_skips(
        self,
        ctx: Context,
        consumer: str,
        skipped: Sequence[consumers.SkippedEvent],
        reason: str = "",
    ) -> int | None:
        """Append ``consumer.event_skipped`` for each event not recorded as skipped already;
        return the last position written (None if all were recorded before)."""
        ctx.principal.require("administer")
        command = parse(
            consumers.SkipParked, consumer=consumer, events=tuple(skipped), reason=reason
        )
        stream = consumers.stream_id(consumer)
        current = load(self.store, stream, consumers.evolve, consumers.SkipLog())
        events = consumers.decide(command, current.state)
        if not events:
            return None
        return self.store.append(stamp(ctx, stream, current.version, events))[-1].position
