"""Read model of API keys (never their secrets or hashes)."""

from __future__ import annotations

from typing import ClassVar

from ..store.backends import Row
from ..store.envelope import Envelope
from .base import RowProjection, when


def api_key_row(old: Row | None, envelope: Envelope) -> Row | None:
    """The key's row after ``envelope`` (pure)."""
    data = envelope.data
    common = {
        "version": envelope.version,
        "position": envelope.position,
        "updated_at": when(envelope),
    }
    if envelope.type == "api_key.issued":
        return {
            "id": envelope.aggregate_key,
            "name": data["name"],
            "role": data["role"],
            "status": "active",
            "expires_at": data.get("expires_at"),
            "rotation_policy": data.get("rotation_policy"),
            "deliver_to": data.get("deliver_to"),
            "previous_valid_until": None,
            "rotation_due_at": None,
            "issued_at": when(envelope),
            "rotated_at": None,
            "created_position": envelope.position,
            **common,
        }
    if old is None:
        return None
    changes: Row = {}
    if envelope.type == "api_key.rotated":
        changes = {
            "rotated_at": when(envelope),
            "previous_valid_until": data["previous_valid_until"],
            "rotation_due_at": None,
        }
    elif envelope.type == "api_key.rotation_due":
        changes = {"rotation_due_at": data["due_at"]}
    elif envelope.type == "api_key.previous_secret_retired":
        changes = {"previous_valid_until": None}
    elif envelope.type == "api_key.expired":
        changes = {"status": "expired"}
    elif envelope.type == "api_key.revoked":
        changes = {"status": "revoked", "previous_valid_until": None}
    return {**old, **changes, **common}


class ApiKeysProjection(RowProjection):
    name = "api_keys"
    table = "api_keys"
    tables = ("api_keys",)
    types: ClassVar[frozenset[str] | None] = frozenset(
        {
            "api_key.issued",
            "api_key.rotated",
            "api_key.previous_secret_retired",
            "api_key.expired",
            "api_key.revoked",
            "api_key.rotation_due",
        }
    )

    @staticmethod
    def row(old: Row | None, envelope: Envelope) -> Row | None:
        return api_key_row(old, envelope)
