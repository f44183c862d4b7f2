"""Read model of workflows: one row per workflow (its status, draft and published version) and
one per requested version (its graph, agents and outcome). Rows are pure functions of (old row,
envelope)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

from ..store.backends import Row, Tx
from ..store.envelope import Envelope
from .base import Projection, select_in, to_json, upsert_many, when

TYPES = frozenset(
    {
        "workflow.created",
        "workflow.draft_updated",
        "workflow.publish_requested",
        "workflow.published",
        "workflow.publish_failed",
        "workflow.archived",
        "workflow.degraded",
    }
)


def workflow_row(old: Row | None, envelope: Envelope) -> Row | None:
    """The workflow's row after ``envelope`` (pure). None: not a row this event concerns."""
    data = envelope.data
    common = {
        "version": envelope.version,
        "position": envelope.position,
        "updated_at": when(envelope),
    }
    if envelope.type == "workflow.created":
        return {
            "id": envelope.aggregate_key,
            "name": data["name"],
            "status": "DRAFT",
            "draft_version": data.get("draft_version", 1),
            "draft": to_json(data["graph"]),
            "published_version": None,
            "degraded": 0,
            "failure_reason": None,
            "created_position": envelope.position,
            "created_at": when(envelope),
            **common,
        }
    if old is None:
        return None
    changes: Row = {}
    if envelope.type == "workflow.draft_updated":
        changes = {"draft": to_json(data["graph"]), "draft_version": data["draft_version"]}
    elif envelope.type == "workflow.publish_requested":
        changes = {"status": "PUBLISHING", "failure_reason": None}
    elif envelope.type == "workflow.published":
        changes = {
            "status": "PUBLISHED",
            "published_version": data["version"],
            "degraded": 0,
            "failure_reason": None,
        }
    elif envelope.type == "workflow.publish_failed":
        live = old["published_version"] is not None
        changes = {
            "status": "PUBLISHED" if live else "PUBLISH_FAILED",
            "failure_reason": data["reason"],
        }
    elif envelope.type == "workflow.archived":
        changes = {"status": "ARCHIVED"}
    elif envelope.type == "workflow.degraded" and data["version"] == old["published_version"]:
        changes = {"degraded": 1}
    return {**old, **changes, **common}


def version_id(workflow: object, version: object) -> str:
    return f"{workflow}:{version}"


def version_row(old: Row | None, envelope: Envelope) -> Row | None:
    """A requested version's row after ``envelope`` (pure)."""
    data = envelope.data
    if envelope.type == "workflow.publish_requested":
        return {
            "id": version_id(envelope.aggregate_id, data["version"]),
            "workflow_id": envelope.aggregate_key,
            "version": data["version"],
            "status": "PUBLISHING",
            "graph": to_json(data["graph"]),
            "agents": to_json(list(data["agents"])),
            "degraded_by": "[]",
            "failure_reason": None,
            "requested_at": when(envelope),
            "settled_at": None,
            "position": envelope.position,
        }
    if old is None:
        return None
    changes: Row = {"position": envelope.position}
    if envelope.type == "workflow.published":
        changes |= {"status": "PUBLISHED", "settled_at": when(envelope)}
    elif envelope.type == "workflow.publish_failed":
        changes |= {
            "status": "PUBLISH_FAILED",
            "settled_at": when(envelope),
            "failure_reason": data["reason"],
        }
    elif envelope.type == "workflow.degraded":
        degraded = json.loads(old["degraded_by"])
        if data["agent_id"] not in degraded:
            changes["degraded_by"] = to_json([*degraded, data["agent_id"]])
    return {**old, **changes}


class WorkflowsProjection(Projection):
    name = "workflows"
    tables = ("workflows", "workflow_versions")
    types: ClassVar[frozenset[str] | None] = TYPES

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return [
            *tx.all("SELECT * FROM workflows WHERE id = ?", (key,)),
            *tx.all(
                "SELECT * FROM workflow_versions WHERE workflow_id = ? ORDER BY version", (key,)
            ),
        ]

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        wanted = [e for e in envelopes if self.wants(e)]
        if not wanted:
            return
        rows = select_in(tx, "workflows", "id", sorted({e.aggregate_key for e in wanted}))
        versioned = {
            e.position: version_id(e.aggregate_id, e.data["version"])
            for e in wanted
            if "version" in e.data and e.type != "workflow.archived"
        }
        versions = select_in(tx, "workflow_versions", "id", sorted(set(versioned.values())))
        changed: dict[str, Row] = {}
        changed_versions: dict[str, Row] = {}
        for envelope in wanted:
            key = envelope.aggregate_key
            new = workflow_row(rows.get(key), envelope)
            if new is not None:
                rows[key] = changed[key] = new
            vid = versioned.get(envelope.position)
            if vid is not None:
                row = version_row(versions.get(vid), envelope)
                if row is not None:
                    versions[vid] = changed_versions[vid] = row
        upsert_many(tx, "workflows", "id", list(changed.values()))
        upsert_many(tx, "workflow_versions", "id", list(changed_versions.values()))
