"""Read model of agents: one row per agent with its current configuration and the workflow
versions attached to it."""

from __future__ import annotations

import json
from typing import ClassVar

from ..store.backends import Row
from ..store.envelope import Envelope
from .base import RowProjection, to_json, when

COLUMNS = (
    "name",
    "description",
    "provider",
    "model",
    "temperature",
    "max_tokens",
    "system_prompt",
)


def agent_row(old: Row | None, envelope: Envelope) -> Row | None:
    """The agent's row after ``envelope`` (pure). None: the event does not concern a known row."""
    data = envelope.data
    common = {
        "version": envelope.version,
        "position": envelope.position,
        "updated_at": when(envelope),
    }
    if envelope.type == "agent.registered":
        return {
            "id": envelope.aggregate_key,
            **{c: data[c] for c in COLUMNS},
            "tools": to_json(list(data.get("tools", ()))),
            "workflows": "[]",
            "status": "active",
            "config_version": 1,
            "created_position": envelope.position,
            "registered_at": when(envelope),
            **common,
        }
    if old is None:
        return None
    if envelope.type == "agent.reconfigured":
        changes = {c: data[c] for c in COLUMNS if data.get(c) is not None}
        if data.get("tools") is not None:
            changes["tools"] = to_json(list(data["tools"]))
        return {**old, **changes, "config_version": data["config_version"], **common}
    if envelope.type == "agent.retired":
        return {**old, "status": "retired", **common}
    if envelope.type in ("agent.workflow_attached", "agent.workflow_detached"):
        return {**old, "workflows": _attachments(old, envelope), **common}
    return {**old, **common}


def _attachments(old: Row, envelope: Envelope) -> str:
    """The agent's attached workflow versions after an attach or a detach, oldest first."""
    ref = {"workflow_id": str(envelope.data["workflow_id"]), "version": envelope.data["version"]}
    attached = [w for w in json.loads(old.get("workflows") or "[]") if w != ref]
    if envelope.type == "agent.workflow_attached":
        attached.append(ref)
    return to_json(attached)


class AgentsProjection(RowProjection):
    name = "agents"
    table = "agents"
    tables = ("agents",)
    types: ClassVar[frozenset[str] | None] = frozenset(
        {
            "agent.registered",
            "agent.reconfigured",
            "agent.retired",
            "agent.workflow_attached",
            "agent.workflow_detached",
        }
    )

    @staticmethod
    def row(old: Row | None, envelope: Envelope) -> Row | None:
        return agent_row(old, envelope)
