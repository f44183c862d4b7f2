"""Audit log: every event, with who did it and when."""

from __future__ import annotations

from collections.abc import Sequence

from ..store.backends import Row, Tx
from ..store.envelope import Envelope
from .base import Projection, to_json, when


def audit_row(envelope: Envelope) -> Row:
    return {
        "position": envelope.position,
        "event_id": str(envelope.id),
        "type": envelope.type,
        "aggregate_type": envelope.aggregate_type,
        "aggregate_id": envelope.aggregate_key,
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
        # The log's positions only grow: the rows are new, unless redelivered (then merged).
        tx.upsert_many("audit_log", "position", [audit_row(e) for e in envelopes], new=True)

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return tx.all(
            "SELECT position, type, occurred_at FROM audit_log WHERE aggregate_id = ?"
            " ORDER BY position",
            (key,),
        )
