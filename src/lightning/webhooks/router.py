"""The webhook dispatcher's handler (a ``consumers.Handler``): it keeps the subscriptions
(``webhook_endpoints``) and records, for every event, one delivery per subscription that wants
it — durably, in the transaction of its tracking position, before anything is sent. The sender
(``sender.py``) then works through the deliveries.

Which subscription wants an event is decided in log order, so a subscription receives the
events appended after it, and an update applies from the next event on:

* active: deliveries are recorded and sent; paused: recorded and held until it resumes;
* disabled (by failures, a 410, or an operator): no deliveries are recorded, and those still
  pending are failed (``recoverWebhooks`` sends them again once it is enabled) — except an API
  key's delivered secret, which is held until the subscription is enabled;
* deleted: pending deliveries fail, and its signing secrets are erased.

An ``api_key.rotated`` that names the subscription it is ``delivered_to`` (a rotation by the
key's policy) is delivered there whatever its event types, carrying the sealed secret's id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from ..domain.event_types import TypeFilter
from ..store.backends import Row, Tx
from ..store.envelope import Envelope, format_time

HANDLER = "webhooks"
_DELIVERY_IDS = UUID("8a4f3c1e-5b2d-4e6f-9a7b-1c2d3e4f5a6b")
_COLUMNS = (
    "id",
    "url",
    "event_types",
    "description",
    "status",
    "secret_id",
    "secret_fingerprint",
    "previous_secret_id",
    "previous_valid_until",
    "disabled_reason",
    "failing_since",
    "created_position",
    "position",
    "version",
    "created_at",
    "updated_at",
)
# What the log decides; failing_since is the sender's (operational state), set back on enable.
_FROM_EVENTS = [c for c in _COLUMNS if c not in ("id", "failing_since", "created_position")]


def delivery_id(subscription_id: str, event_id: UUID | str) -> str:
    """One delivery per (event, subscription), the same however often it is recorded: its id
    is the ``webhook-id`` every attempt carries, so a receiver can drop duplicates by it."""
    return str(uuid5(_DELIVERY_IDS, f"{subscription_id}:{event_id}"))


def endpoint_row(old: Row | None, envelope: Envelope) -> Row | None:
    """The subscription's row after ``envelope`` (pure)."""
    data, at = envelope.data, format_time(envelope.occurred_at)
    common = {"position": envelope.position, "version": envelope.version, "updated_at": at}
    if envelope.type == "webhook.subscribed":
        return {
            "id": envelope.aggregate_key,
            "url": data["url"],
            "event_types": json.dumps(list(data["event_types"])),
            "description": data.get("description", ""),
            "status": "active",
            "secret_id": str(data["secret_id"]),
            "secret_fingerprint": data["secret_fingerprint"],
            "previous_secret_id": None,
            "previous_valid_until": None,
            "disabled_reason": None,
            "failing_since": None,
            "created_position": envelope.position,
            "created_at": at,
            **common,
        }
    if old is None:
        return None
    changes: Row = {}
    match envelope.type:
        case "webhook.updated":
            changes = {k: data[k] for k in ("url", "description") if data.get(k) is not None}
            if data.get("event_types") is not None:
                changes["event_types"] = json.dumps(list(data["event_types"]))
        case "webhook.secret_rotated":
            changes = {
                "secret_id": str(data["secret_id"]),
                "secret_fingerprint": data["secret_fingerprint"],
                "previous_secret_id": old["secret_id"],
                "previous_valid_until": format_time(_time(data["previous_valid_until"])),
            }
        case "webhook.paused":
            changes = {"status": "paused"}
        case "webhook.resumed":
            changes = {"status": "active"}
        case "webhook.enabled":
            changes = {"status": "active", "disabled_reason": None, "failing_since": None}
        case "webhook.disabled":
            changes = {
                "status": "disabled",
                "disabled_reason": data.get("reason") or data.get("cause", "disabled"),
            }
        case "webhook.deleted":
            changes = {"status": "deleted"}
    return {**old, **changes, **common}


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class WebhookRouter:
    name = HANDLER

    def wants(self, envelope: Envelope) -> bool:
        return True  # every event may match a subscription

    def key(self, envelope: Envelope) -> str:
        return envelope.aggregate_key

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        endpoint = tx.all("SELECT * FROM webhook_endpoints WHERE id = ?", (key,))
        deliveries = tx.all(
            "SELECT id, subscription_id, event_id, position, status, attempts"
            " FROM webhook_deliveries WHERE subscription_id = ? ORDER BY position DESC LIMIT 20",
            (key,),
        )
        return endpoint + deliveries

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        endpoints = {
            r["id"]: r for r in tx.all("SELECT * FROM webhook_endpoints WHERE status <> 'deleted'")
        }
        filters = {i: _filter(r) for i, r in endpoints.items()}
        created: dict[str, Row] = {}
        changed: dict[str, Row] = {}
        deliveries: list[list[object]] = []
        orphaned: list[str] = []
        for envelope in envelopes:
            if envelope.aggregate_type == "webhook":
                if envelope.type in ("webhook.disabled", "webhook.deleted"):
                    _insert(tx, deliveries)  # recorded first, so they end with the others
                    deliveries = []
                self._subscription_event(tx, envelope, endpoints, created, changed)
                if (row := endpoints.get(envelope.aggregate_key)) is not None:
                    filters[row["id"]] = _filter(row)
                continue
            deliveries += _deliveries(envelope, endpoints, filters, orphaned)
        if orphaned:  # a key's new secret for a subscription that is gone: no one can get it
            tx.execute_many("DELETE FROM secrets WHERE id = ?", [[s] for s in orphaned])
        if created:
            columns = ", ".join(_COLUMNS)
            tx.execute_many(
                f"INSERT INTO webhook_endpoints ({columns}) VALUES"  # noqa: S608
                f" ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT (id) DO NOTHING",
                [[r[c] for c in _COLUMNS] for r in created.values()],
            )
        if changed:
            assignments = ", ".join(f"{c} = ?" for c in _FROM_EVENTS)
            tx.execute_many(
                f"UPDATE webhook_endpoints SET {assignments} WHERE id = ?",  # noqa: S608
                [[r[c] for c in _FROM_EVENTS] + [i] for i, r in changed.items()],
            )
        _insert(tx, deliveries)

    def _subscription_event(
        self,
        tx: Tx,
        envelope: Envelope,
        endpoints: dict[str, Row],
        created: dict[str, Row],
        changed: dict[str, Row],
    ) -> None:
        key = envelope.aggregate_key
        old = endpoints.get(key)
        if old is None and envelope.type != "webhook.subscribed":
            old = tx.one("SELECT * FROM webhook_endpoints WHERE id = ?", (key,))
        row = endpoint_row(old, envelope)
        if row is None:
            return
        endpoints[key] = row
        if envelope.type == "webhook.subscribed":
            if old is None:
                created[key] = row
            return
        if key in created:
            created[key] = row
        else:
            changed[key] = row
        if envelope.type == "webhook.secret_rotated" and old is not None:
            dropped = old.get("previous_secret_id")  # the one before the previous: done signing
            if dropped:
                tx.execute("DELETE FROM secrets WHERE id = ?", (dropped,))
        if envelope.type == "webhook.enabled":
            tx.execute("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?", (key,))
        if envelope.type in ("webhook.disabled", "webhook.deleted"):
            _end_pending(tx, key, row, envelope)


def _insert(tx: Tx, deliveries: list[list[object]]) -> None:
    if deliveries:
        tx.execute_many(
            "INSERT INTO webhook_deliveries (id, subscription_id, event_id, position,"
            " event_type, status, attempts, round_attempts, next_attempt_at, secret_id,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'PENDING', 0, 0, ?, ?, ?, ?)"
            " ON CONFLICT (subscription_id, event_id) DO NOTHING",
            deliveries,
        )


def _filter(row: Row) -> TypeFilter | None:
    return TypeFilter.parse(json.loads(row["event_types"]), field="eventTypes")


def _deliveries(
    envelope: Envelope,
    endpoints: dict[str, Row],
    filters: dict[str, TypeFilter | None],
    orphaned: list[str],
) -> list[list[object]]:
    at = format_time(envelope.occurred_at)
    rows: list[list[object]] = []
    target = _delivered_to(envelope)
    sealed = envelope.data.get("secret_id") if target else None
    if sealed and (target not in endpoints or endpoints[target]["status"] == "deleted"):
        orphaned.append(str(sealed))
    for key, endpoint in endpoints.items():
        secret_id = envelope.data.get("secret_id") if key == target else None
        wanted = endpoint["status"] in ("active", "paused") and (
            (type_filter := filters.get(key)) is not None and type_filter.matches(envelope.type)
        )
        if not wanted and not (secret_id and endpoint["status"] != "deleted"):
            continue
        rows.append(
            [
                delivery_id(key, envelope.id),
                key,
                str(envelope.id),
                envelope.position,
                envelope.type,
                at,  # due at once: first attempts go out in position order
                None if secret_id is None else str(secret_id),
                at,
                at,
            ]
        )
    return rows


def _delivered_to(envelope: Envelope) -> str | None:
    if envelope.type != "api_key.rotated" or not envelope.data.get("delivered_to"):
        return None
    return str(envelope.data["delivered_to"])


def _end_pending(tx: Tx, key: str, row: Row, envelope: Envelope) -> None:
    """A disabled subscription's pending deliveries fail (a key's secret is held); a deleted
    one's all fail, and its secrets are erased."""
    deleted = envelope.type == "webhook.deleted"
    why = "subscription deleted" if deleted else f"subscription disabled: {row['disabled_reason']}"
    held = "" if deleted else " AND secret_id IS NULL"
    tx.execute(
        "UPDATE webhook_deliveries SET status = 'FAILED', next_attempt_at = NULL,"  # noqa: S608
        f" last_error = ?, updated_at = ? WHERE subscription_id = ? AND status = 'PENDING'{held}",
        (why, format_time(envelope.occurred_at), key),
    )
    if deleted:
        secrets = [row["secret_id"], row["previous_secret_id"]]
        held_keys = tx.all(
            "SELECT secret_id FROM webhook_deliveries WHERE subscription_id = ?"
            " AND secret_id IS NOT NULL",
            (key,),
        )
        secrets += [r["secret_id"] for r in held_keys]
        tx.execute_many("DELETE FROM secrets WHERE id = ?", [[s] for s in secrets if s])
        tx.execute(
            "UPDATE webhook_deliveries SET secret_id = NULL WHERE subscription_id = ?", (key,)
        )
