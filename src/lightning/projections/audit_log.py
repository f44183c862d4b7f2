"""Audit log: every event, with who did it and when."""

from __future__ import annotations

from ..store.envelope import Envelope
from .base import Projection, to_json, upsert, when
from .store import Row, Tx


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
        "data": to_json(envelope.data),
    }


class AuditLogProjection(Projection):
    name = "audit_log"
    tables = ("audit_log",)
    ddl = (
        "CREATE TABLE IF NOT EXISTS audit_log ("
        " position BIGINT PRIMARY KEY, event_id TEXT NOT NULL, type TEXT NOT NULL,"
        " aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, version BIGINT NOT NULL,"
        " actor TEXT NOT NULL, occurred_at TEXT NOT NULL, correlation_id TEXT NOT NULL,"
        " causation_id TEXT, data TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS audit_log_by_actor ON audit_log (actor, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_by_aggregate ON audit_log (aggregate_id, position)",
        "CREATE INDEX IF NOT EXISTS audit_log_by_type ON audit_log (type, position)",
    )

    def apply(self, tx: Tx, envelope: Envelope) -> None:
        upsert(tx, "audit_log", "position", audit_row(envelope))
