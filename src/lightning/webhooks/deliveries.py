"""The delivery records: what the sender claims and records, and what operators read and re-arm.

A delivery is PENDING (its next attempt at ``next_attempt_at``), SUCCEEDED (a 2xx) or FAILED
(its round of attempts ran out, its subscription was disabled or deleted). A sender *claims*
a due delivery with a lease (``leased_until``) before it sends, so two senders never send the
same attempt, and a sender killed mid-attempt leaves a lease that simply runs out: the delivery
is sent again (at least once). ``redeliverWebhook`` and ``recoverWebhooks`` re-arm deliveries
for a new round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..domain.errors import Conflict, NotFound, ValidationFailed
from ..domain.event_types import TypeFilter
from ..domain.webhooks import WebhookSubscription
from ..projections.queries import MAX_PAGE, Page, decode_cursor, encode_cursor
from ..store.backends import Backend, Row, Tx
from ..store.envelope import format_time
from ..store.event_store import EventStore
from .router import delivery_id

DeliveryStatus = Literal["PENDING", "SUCCEEDED", "FAILED"]
STATUSES: tuple[DeliveryStatus, ...] = ("PENDING", "SUCCEEDED", "FAILED")
LATENCY_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 15000)  # ms
RECOVER_MAX = 10_000  # deliveries one recover records
RECOVER_SCAN = 200_000  # events one recover reads
RESPONSE_KEPT = 1024  # characters of a response body kept with its attempt


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    subscription_id: str
    attempt: int
    at: datetime
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    response: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def outcome(self) -> str:
        if self.succeeded:
            return "success"
        if self.status_code is not None:
            return f"http_{self.status_code // 100}xx"
        return "refused" if (self.error or "").startswith("refused") else "error"


@dataclass(frozen=True)
class Recovered:
    deliveries: int
    next_since: int | None  # where to recover from next, when RECOVER_MAX was reached


@dataclass
class DeliveryView:
    row: Row
    attempts: list[Row] = field(default_factory=list)


class Deliveries:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # ---- the sender -------------------------------------------------------------------------

    def due(self, now: datetime) -> list[Row]:
        """Per active subscription with due deliveries: how many are first attempts
        (``first``) and how many retries (``again``). A read, so that a sender with nothing to
        do never takes a write lock."""
        at = format_time(now)
        due = (
            "EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.subscription_id = e.id"
            " AND d.status = 'PENDING' AND d.attempts {} 0 AND d.next_attempt_at <= ?"
            " AND (d.leased_until IS NULL OR d.leased_until < ?))"
        )
        rows = self.backend.query(
            f"SELECT e.id, {due.format('=')} AS first, {due.format('>')} AS again"  # noqa: S608
            " FROM webhook_endpoints e WHERE e.status = 'active'",
            (at, at, at, at),
        )
        return [r for r in rows if r["first"] or r["again"]]

    def claim(
        self,
        subscription_id: str,
        now: datetime,
        limit: int,
        lease: float,
        *,
        first: bool,
        concurrency: int,
    ) -> list[Row]:
        """Lease up to ``limit`` due deliveries of one subscription, in position order: never
        attempted yet (``first``: one at a time, so they go out in log order), or to be tried
        again. What every sender holds counts: leases are rows, so the subscription's
        ``concurrency`` and the one first attempt hold however many senders run (claims of one
        subscription take its row's lock, one after another)."""
        at, until = format_time(now), format_time(now + timedelta(seconds=lease))
        attempted = "attempts = 0" if first else "attempts > 0"
        with self.backend.transaction() as tx:
            tx.commit_asynchronously()  # a lease lost in a crash: the delivery goes again
            busy = tx.one(
                "SELECT e.status, (SELECT COUNT(*) FROM webhook_deliveries d"  # noqa: S608
                " WHERE d.subscription_id = e.id AND d.status = 'PENDING' AND d.attempts > 0"
                " AND d.leased_until >= ?) AS n, (SELECT COUNT(*) FROM webhook_deliveries d"
                " WHERE d.subscription_id = e.id AND d.status = 'PENDING' AND d.attempts = 0"
                " AND d.leased_until >= ?) AS first FROM webhook_endpoints e WHERE e.id = ?"
                + tx.for_update,
                (at, at, subscription_id),
            )
            if busy is None or busy["status"] != "active":
                return []
            # In flight: the retries, and one for the first attempts (a lane's batch is sent
            # one at a time); one lane per subscription, whichever sender holds it.
            lanes = 1 if int(busy["first"]) else 0
            if first:
                limit = 0 if lanes or int(busy["n"]) >= concurrency else limit
            else:
                limit = min(limit, concurrency - int(busy["n"]) - lanes)
            if limit <= 0:
                return []
            return tx.all(
                "UPDATE webhook_deliveries SET leased_until = ? WHERE id IN ("  # noqa: S608
                f" SELECT id FROM webhook_deliveries WHERE subscription_id = ? AND {attempted}"
                " AND status = 'PENDING' AND next_attempt_at <= ?"
                " AND (leased_until IS NULL OR leased_until < ?)"
                # the subscription's status as of this statement: paused meanwhile, it waits
                " AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = subscription_id"
                " AND e.status = 'active') ORDER BY position LIMIT ?)"
                " AND status = 'PENDING' AND (leased_until IS NULL OR leased_until < ?)"
                " RETURNING id, subscription_id, event_id, position, event_type, attempts,"
                " round_attempts, secret_id, leased_until",
                (until, subscription_id, at, at, limit, at),
            )

    def record(
        self,
        attempt: Attempt,
        *,
        lease: str,
        next_at: datetime | None,
        erase_secret: str | None,
        renew: Sequence[tuple[str, str]] = (),
        renewed: str | None = None,
    ) -> Row | None:
        """The attempt's outcome, in one transaction: its row, the delivery's new state (the next
        attempt, or SUCCEEDED/FAILED) — only while it is still PENDING under this attempt's
        ``lease``: a delivery ended meanwhile (its subscription disabled or deleted) or re-armed
        stays as it is —, the subscription's ``failing_since``, the counters; a delivered key
        secret is erased with its success. Returns the subscription's row."""
        at = format_time(attempt.at)
        status = "SUCCEEDED" if attempt.succeeded else ("PENDING" if next_at else "FAILED")
        with self.backend.transaction() as tx:
            # An outcome lost in a database crash only means the delivery goes again (at least
            # once); so this commit need not wait for the disk.
            tx.commit_asynchronously()
            tx.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms,"
                " error, response) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    attempt.delivery_id,
                    attempt.attempt,
                    at,
                    attempt.status_code,
                    round(attempt.latency_ms, 3),
                    attempt.error,
                    attempt.response,
                ),
            )
            tx.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
                " round_attempts = round_attempts + 1, next_attempt_at = ?, leased_until = NULL,"
                " last_error = ?, updated_at = ?, secret_id = CASE WHEN ? THEN NULL"
                " ELSE secret_id END WHERE id = ? AND status = 'PENDING' AND leased_until = ?",
                (
                    status,
                    None if next_at is None else format_time(next_at),
                    None if attempt.succeeded else _error_of(attempt),
                    at,
                    attempt.succeeded,
                    attempt.delivery_id,
                    lease,
                ),
            )
            if renew and renewed is not None:  # a lane's next first attempts: still its own
                tx.execute_many(
                    "UPDATE webhook_deliveries SET leased_until = ? WHERE id = ?"
                    " AND leased_until = ?",
                    [[renewed, i, held] for i, held in renew],
                )
            if erase_secret is not None and attempt.succeeded:
                tx.execute("DELETE FROM secrets WHERE id = ?", (erase_secret,))
            _count(tx, attempt)
            return tx.one(
                "UPDATE webhook_endpoints SET failing_since = CASE WHEN ? THEN NULL"
                " ELSE COALESCE(failing_since, ?) END WHERE id = ?"
                " RETURNING id, status, failing_since",
                (attempt.succeeded, at, attempt.subscription_id),
            )

    def release(self, delivery: str, lease: str) -> None:
        """Give a claimed delivery back unsent (the sender is stopping)."""
        with self.backend.transaction() as tx:
            tx.execute(
                "UPDATE webhook_deliveries SET leased_until = NULL WHERE id = ?"
                " AND leased_until = ?",
                (delivery, lease),
            )

    # ---- operators --------------------------------------------------------------------------

    def listed(
        self,
        *,
        subscription_id: str | None,
        status: str | None,
        first: int,
        after: str | None,
        attempts: bool = True,
    ) -> Page[DeliveryView]:
        """Newest first (by position, then id)."""
        if not 0 < first <= MAX_PAGE:
            raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}")
        if status is not None and status not in STATUSES:
            raise ValidationFailed(f"status is one of {', '.join(STATUSES)}")
        where, params = ["1 = 1"], []
        if subscription_id is not None:
            where.append("subscription_id = ?")
            params.append(subscription_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        offset = decode_cursor("delivery", after) or 0
        rows = self.backend.query(
            f"SELECT * FROM webhook_deliveries WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY position DESC, id LIMIT ? OFFSET ?",
            (*params, first + 1, offset),
        )
        views = [DeliveryView(r) for r in rows[:first]]
        if attempts and views:
            self._attach_attempts(views)
        items = [(encode_cursor("delivery", offset + n + 1), v) for n, v in enumerate(views)]
        return Page(items, len(rows) > first)

    def get(self, delivery: str) -> DeliveryView:
        rows = self.backend.query("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery,))
        if not rows:
            raise NotFound(f"webhook delivery {delivery} does not exist")
        view = DeliveryView(rows[0])
        self._attach_attempts([view])
        return view

    def _attach_attempts(self, views: Sequence[DeliveryView]) -> None:
        ids = [v.row["id"] for v in views]
        marks = ", ".join("?" * len(ids))
        found = self.backend.query(
            f"SELECT * FROM webhook_attempts WHERE delivery_id IN ({marks})"  # noqa: S608
            " ORDER BY delivery_id, attempt",
            ids,
        )
        by_id = {v.row["id"]: v for v in views}
        for row in found:
            by_id[row["delivery_id"]].attempts.append(row)

    def subscription_of(self, delivery: str) -> str:
        rows = self.backend.query(
            "SELECT subscription_id FROM webhook_deliveries WHERE id = ?", (delivery,)
        )
        if not rows:
            raise NotFound(f"webhook delivery {delivery} does not exist")
        return str(rows[0]["subscription_id"])

    def redeliver(self, delivery: str, status: str, now: datetime) -> str:
        """A new round of attempts for one delivery, the first at once (``status``: its
        subscription's, as the log has it)."""
        _check_endpoint(status)
        with self.backend.transaction() as tx:
            _rearm(tx, [delivery], now)
        return delivery

    def recover(
        self,
        store: EventStore,
        subscription: WebhookSubscription,
        created_position: int,
        since: int,
        now: datetime,
    ) -> Recovered:
        """Send again every event from position ``since`` on that the subscription (as the
        log has it) wants now — read from the log, so also those it never recorded while it
        was disabled —, up to ``RECOVER_MAX`` deliveries per call."""
        if since < 0:
            raise ValidationFailed("since must not be negative", details={"since": since})
        _check_endpoint(subscription.status)
        subscription_id = str(subscription.id)
        wanted = TypeFilter.parse(list(subscription.event_types), field="eventTypes")
        start = max(since, created_position + 1)
        picked: list[list[object]] = []
        last = start - 1
        upto = min(store.max_position(), start - 1 + RECOVER_SCAN)
        for envelope in store.iterate(start - 1, upto=upto):
            last = envelope.position
            mine = envelope.type == "api_key.rotated" and str(
                envelope.data.get("delivered_to")
            ) == str(subscription_id)
            if envelope.aggregate_type == "webhook" or not (
                mine or (wanted is not None and wanted.matches(envelope.type))
            ):
                continue
            at = format_time(now)
            picked.append(
                [
                    delivery_id(subscription_id, envelope.id),
                    subscription_id,
                    str(envelope.id),
                    envelope.position,
                    envelope.type,
                    at,
                    at,
                    at,
                ]
            )
            if len(picked) >= RECOVER_MAX:
                break
        with self.backend.transaction() as tx:
            tx.execute_many(
                "INSERT INTO webhook_deliveries (id, subscription_id, event_id, position,"
                " event_type, status, attempts, round_attempts, next_attempt_at, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, 'PENDING', 0, 0, ?, ?, ?)"
                " ON CONFLICT (subscription_id, event_id) DO NOTHING",
                picked,
            )
            _rearm(tx, [str(p[0]) for p in picked], now)
        last = last if len(picked) >= RECOVER_MAX else upto
        return Recovered(len(picked), last + 1 if last < store.max_position() else None)

    # ---- metrics ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = self.backend.query(
            "SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status"
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def pending_retries(self) -> int:
        rows = self.backend.query(
            "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'PENDING'"
            " AND round_attempts > 0"
        )
        return int(rows[0]["n"])

    def endpoint_counts(self) -> dict[str, int]:
        rows = self.backend.query(
            "SELECT status, COUNT(*) AS n FROM webhook_endpoints GROUP BY status"
        )
        return {r["status"]: int(r["n"]) for r in rows}

    def attempt_stats(self) -> list[Row]:
        return self.backend.query("SELECT outcome, le, count, total_ms FROM webhook_attempt_stats")


def _check_endpoint(status: str) -> None:
    if status == "deleted":
        raise Conflict("the subscription is deleted")
    if status == "disabled":
        raise Conflict("the subscription is disabled: enable it first")


def _rearm(tx: Tx, ids: Sequence[str], now: datetime) -> None:
    at = format_time(now)
    tx.execute_many(
        "UPDATE webhook_deliveries SET status = 'PENDING', round_attempts = 0,"
        " next_attempt_at = ?, leased_until = NULL, updated_at = ? WHERE id = ?"
        " AND (status <> 'PENDING' OR round_attempts > 0)",
        [[at, at, i] for i in ids],
    )


def _error_of(attempt: Attempt) -> str:
    if attempt.error:
        return attempt.error
    return f"HTTP {attempt.status_code}"


def _count(tx: Tx, attempt: Attempt) -> None:
    le = next((str(b) for b in LATENCY_BUCKETS if attempt.latency_ms <= b), "+Inf")
    tx.execute(
        "INSERT INTO webhook_attempt_stats (outcome, le, count, total_ms) VALUES (?, ?, 1, ?)"
        " ON CONFLICT (outcome, le) DO UPDATE SET count = webhook_attempt_stats.count + 1,"
        " total_ms = webhook_attempt_stats.total_ms + excluded.total_ms",
        (attempt.outcome, le, attempt.latency_ms),
    )


def subscriptions_page(
    backend: Backend, *, first: int, after: str | None, status: str | None
) -> Page[Row]:
    """The subscriptions as the dispatcher holds them, oldest first (deleted ones only when
    asked for by status)."""
    if not 0 < first <= MAX_PAGE:
        raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}")
    start = decode_cursor("subscription", after) or 0
    if status is None:
        where, params = "status <> 'deleted'", []
    else:
        where, params = "status = ?", [status]
    rows = backend.query(
        f"SELECT * FROM webhook_endpoints WHERE {where} AND created_position > ?"  # noqa: S608
        " ORDER BY created_position LIMIT ?",
        (*params, start, first + 1),
    )
    items = [(encode_cursor("subscription", int(r["created_position"])), r) for r in rows[:first]]
    return Page(items, len(rows) > first)


def subscription_row(backend: Backend, subscription_id: str) -> Row | None:
    rows = backend.query("SELECT * FROM webhook_endpoints WHERE id = ?", (subscription_id,))
    return rows[0] if rows else None
