"""What an operator does with parked events: apply them again after a fix, or skip them.

Both lock the handler's tracking row first, as a consumer's batch does, so they never interleave
with a worker that is parking more events of the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .. import failpoints
from ..store.backends import Row, Tx
from ..store.envelope import Envelope
from ..store.event_store import EventStore
from ..store.outages import is_retryable
from . import parking
from .batch import savepoint
from .handler import Handler
from .parking import ParkedEvent, ParkedFilter
from .tracking import TrackingStore

APPLY_PAGE = 500


@dataclass(frozen=True)
class RetryResult:
    consumer: str
    handler: str
    key: str
    events: list[ParkedEvent]
    error: str | None = None  # None: applied (or, in a dry run, would apply) cleanly
    before: list[Row] = field(default_factory=list)  # what the handler holds for the key
    after: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def retry_group(
    tracking: TrackingStore,
    events: EventStore,
    consumer: str,
    handler: Handler,
    key: str,
    *,
    dry_run: bool,
) -> RetryResult:
    """Apply a key's parked events in order, in one transaction; unpark them if that works.
    A dry run does the same in a transaction that is rolled back."""
    transaction = tracking.backend.trial() if dry_run else tracking.transaction(commit=True)
    with transaction as tx:
        tracking.positions(tx, [handler.name], lock=True)
        rows = parking.listed(tx, ParkedFilter(consumer, handler.name, key), limit=1_000_000)
        if not rows:
            return RetryResult(consumer, handler.name, key, [], error="nothing parked any more")
        before = handler.snapshot(tx, key)
        error = _apply(tx, handler, key, events.read_at([r.position for r in rows]), len(rows))
        if error is not None:
            if not dry_run:
                parking.failed_again(tx, rows[0], error)
            return RetryResult(consumer, handler.name, key, rows, error, before, before)
        after = handler.snapshot(tx, key)
        if not dry_run:
            parking.unpark(tx, rows)
        return RetryResult(consumer, handler.name, key, rows, None, before, after)


def _apply(
    tx: Tx, handler: Handler, key: str, envelopes: list[Envelope], expected: int
) -> str | None:
    if len(envelopes) != expected:
        return f"the store holds {len(envelopes)} of the {expected} parked positions"
    try:
        with savepoint(tx, "retry_parked"):
            failpoints.check_apply(handler.name, {key})
            wanted = [e for e in envelopes if handler.wants(e)]
            for start in range(0, len(wanted), APPLY_PAGE):
                handler.apply_batch(tx, wanted[start : start + APPLY_PAGE])
    except Exception as exc:
        if is_retryable(exc):
            raise
        return f"{type(exc).__name__}: {exc}"
    return None


def skip(
    tracking: TrackingStore,
    which: ParkedFilter,
    record: Callable[[str, Sequence[ParkedEvent]], object],
) -> list[ParkedEvent]:
    """Record the skip of every parked event ``which`` selects (``record`` appends the
    ``consumer.event_skipped`` facts, idempotently), then unpark them. Events parked after the
    listing stay parked (run it again)."""
    with tracking.transaction(commit=False) as tx:
        rows = parking.listed(tx, which, limit=1_000_000)
    if not rows:
        return []
    for consumer in sorted({r.consumer for r in rows}):
        record(consumer, [r for r in rows if r.consumer == consumer])
    with tracking.transaction(commit=True) as tx:
        tracking.positions(tx, sorted({r.handler for r in rows}), lock=True)
        parking.unpark(tx, rows)
    return rows
