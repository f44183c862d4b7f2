"""Audit log: every event, with who did it and when."""

from __future__ import annotations

from collections.abc import Sequence

from ..store.backends import Row, Tx
from ..store.envelope import Envelope
from .base import Projection, to_json, upsert_many, when


def audit_row(envelope: Envelope) -> Row:
    return {
        "position": envelope.position,
        "event_id": str(envelope.id),
        "type": envelope.type,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": str(envelope.aggregate_id),
        "version": envelope.version,
        "actor": envelope.actor,
        "occurred_at": when(envelope),
        "correlation_id": str(envelope.correlation_id),
        "causation_id": None if envelope.causation_id is None else str(envelope.causation_id),
        "data": to_json(envelope.public_data()),
    }


class AuditLogProjection(Projection):
    name = "audit_log"
    tables = ("audit_log",)

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        upsert_many(tx, "audit_log", "position", [audit_row(e) for e in envelopes])

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return tx.all(
            "SELECT position, type, occurred_at FROM audit_log WHERE aggregate_id = ?"
            " ORDER BY position",
            (key,),
        )
