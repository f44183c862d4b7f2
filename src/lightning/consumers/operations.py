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
from .batch import refuse_undecodable, savepoint, text_safe
from .consumer import now_text
from .handler import Handler
from .parking import ParkedEvent, ParkedFilter
from .tracking import TrackingStore

APPLY_PAGE = 500
BEING_SKIPPED = (
    "an operator is skipping these (or a skip-parked was interrupted: run it again to finish)"
)


@dataclass(frozen=True)
class RetryResult:
    consumer: str
    handler: str
    key: str
    events: list[ParkedEvent]  # what was parked
    applied: int = 0  # how many of them (in order) applied, or in a dry run would apply
    error: str | None = None  # why the next one did not
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
    """Apply a key's parked events again, in order, in one transaction: those that apply are
    unparked; if one still fails, it and those behind it stay parked (with its error counted).
    A dry run does the same in a transaction that is rolled back."""
    transaction = (
        tracking.backend.trial()
        if dry_run
        else tracking.transaction(commit=True, durable=True)  # an operator's action
    )
    with transaction as tx:
        tracking.positions(tx, [handler.name], lock=True)
        rows = parking.listed(tx, ParkedFilter(consumer, handler.name, key), limit=1_000_000)
        if not rows:
            return RetryResult(consumer, handler.name, key, [])  # healed meanwhile
        if any(r.skipping for r in rows):
            return RetryResult(consumer, handler.name, key, rows, error=BEING_SKIPPED)
        before = handler.snapshot(tx, key)
        envelopes = events.read_at_in(tx, [r.position for r in rows])
        if len(envelopes) != len(rows):
            missing = f"the store holds {len(envelopes)} of the {len(rows)} parked positions"
            return RetryResult(consumer, handler.name, key, rows, 0, missing, before, before)
        applied, error = _apply_in_order(tx, handler, key, envelopes)
        after = handler.snapshot(tx, key)
        if not dry_run:
            parking.unpark(tx, rows[:applied])
            if error is not None:
                parking.failed_again(tx, rows[applied], error)
        return RetryResult(consumer, handler.name, key, rows, applied, error, before, after)


def _apply_in_order(
    tx: Tx, handler: Handler, key: str, envelopes: list[Envelope]
) -> tuple[int, str | None]:
    """All at once if that works; else one by one up to the first that fails. Returns how many
    applied, and the failure's error."""
    if _attempt(tx, handler, key, envelopes) is None:
        return len(envelopes), None
    for index, envelope in enumerate(envelopes):
        error = _attempt(tx, handler, key, [envelope])
        if error is not None:
            return index, error
    return len(envelopes), None


def _attempt(tx: Tx, handler: Handler, key: str, envelopes: list[Envelope]) -> str | None:
    try:
        with savepoint(tx, "retry_parked"):
            failpoints.check_apply(handler.name, {key})
            wanted = [e for e in envelopes if handler.wants(e)]
            refuse_undecodable(wanted)
            for start in range(0, len(wanted), APPLY_PAGE):
                handler.apply_batch(tx, wanted[start : start + APPLY_PAGE])
    except Exception as exc:
        if is_retryable(exc):
            raise
        return text_safe(f"{type(exc).__name__}: {exc}")
    return None


def skip(
    tracking: TrackingStore,
    which: ParkedFilter,
    record: Callable[[str, Sequence[ParkedEvent]], object],
) -> list[ParkedEvent]:
    """Skip every parked event ``which`` selects: mark them (so no retry-parked applies them
    meanwhile), record the skips (``record`` appends the ``consumer.event_skipped`` facts,
    idempotently), then unpark them. Interrupted, it is simply run again. Events parked after
    the marking stay parked (run it again)."""
    with tracking.transaction(commit=False) as tx:
        handlers = sorted({r.handler for r in parking.listed(tx, which, limit=1_000_000)})
    if not handlers:
        return []
    with tracking.transaction(commit=True, durable=True) as tx:
        tracking.positions(tx, handlers, lock=True)
        rows = [r for r in parking.listed(tx, which, limit=1_000_000) if r.handler in handlers]
        parking.mark_skipping(tx, rows, now_text())
    try:
        for consumer in sorted({r.consumer for r in rows}):
            record(consumer, [r for r in rows if r.consumer == consumer])
    except BaseException:
        with tracking.transaction(commit=True, durable=True) as tx:
            parking.mark_skipping(tx, rows, None)  # not skipped after all: retry may have them
        raise
    with tracking.transaction(commit=True, durable=True) as tx:
        tracking.positions(tx, handlers, lock=True)
        parking.unpark(tx, rows, only_skipping=True)
    return rows
