"""Reads of the read models: filters and cursor pagination (cursors are opaque positions)."""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..domain.errors import ValidationFailed
from ..domain.event_types import INTERNAL_AGGREGATES, TypeFilter
from ..store.backends import Backend, Row

MAX_PAGE = 500

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next: bool

    @property
    def end_cursor(self) -> str | None:
        return self.items[-1][0] if self.items else None


def encode_cursor(kind: str, key: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode()


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        prefix, _, key = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if prefix != kind or not 0 <= int(key) < 2**63:
            raise ValueError(prefix)
        return int(key)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationFailed(
            "after is not a cursor from this list", details={"after": cursor[:100]}
        ) from None


FILTER_MAX = 200


def check_filter(name: str, value: str | None) -> str | None:
    """A text filter: bounded, and no control characters (PostgreSQL refuses NUL outright)."""
    if value is not None and (
        len(value) > FILTER_MAX or any(unicodedata.category(c)[0] == "C" for c in value)
    ):
        raise ValidationFailed(
            f"{name} has at most {FILTER_MAX} characters, none of them control characters",
            details={name: value[:100].encode("unicode_escape").decode()},
        )
    return value


def _check_first(first: int) -> None:
    if not 0 < first <= MAX_PAGE:
        raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}", details={"first": first})


def _page(rows: list[Row], kind: str, key: str, first: int) -> Page[Row]:
    return Page([(encode_cursor(kind, r[key]), r) for r in rows[:first]], len(rows) > first)


def decode_tools(row: Row) -> Row:
    return {**row, "tools": json.loads(row["tools"]), "workflows": json.loads(row["workflows"])}


def _type_clause(types: TypeFilter) -> tuple[str, list[object]]:
    """SQL for an event-type filter: exact types, and ``<aggregate>.*`` as the range of types
    from ``<aggregate>.`` up to ``<aggregate>/`` (the next byte), which the (type, position)
    index serves. The column compares bytes on both backends (SQLite's default; "C" collation
    on PostgreSQL, event_store/0008), so ``agent_name.reserved`` is not in ``agent.*``'s range."""
    clauses: list[str] = []
    params: list[object] = []
    if types.exact:
        clauses.append(f"type IN ({', '.join('?' * len(types.exact))})")
        params += sorted(types.exact)
    for aggregate in sorted(types.aggregates):
        clauses.append("(type >= ? AND type < ?)")
        params += [f"{aggregate}.", f"{aggregate}/"]
    if types.public:
        internal = sorted(INTERNAL_AGGREGATES)
        clauses.append(" AND ".join("NOT (type >= ? AND type < ?)" for _ in internal))
        params += [bound for a in internal for bound in (f"{a}.", f"{a}/")]
    return "(" + " OR ".join(clauses) + ")", params


class ReadModels:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def agents(
        self,
        *,
        first: int = 50,
        after: str | None = None,
        status: str | None = None,
        provider: str | None = None,
        name: str | None = None,
    ) -> Page[Row]:
        _check_first(first)
        where = ["created_position > ?"]
        params: list[object] = [decode_cursor("agent", after) or 0]
        for column, value in (("status", status), ("provider", provider), ("name", name)):
            if check_filter(column, value) is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows = self.backend.query(
            f"SELECT * FROM agents WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY created_position LIMIT ?",
            [*params, first + 1],
        )
        return _page([decode_tools(r) for r in rows], "agent", "created_position", first)

    def agent(self, agent_id: str) -> Row | None:
        rows = self.backend.query("SELECT * FROM agents WHERE id = ?", (agent_id,))
        return decode_tools(rows[0]) if rows else None

    def workflows(
        self, *, first: int = 50, after: str | None = None, status: str | None = None
    ) -> Page[Row]:
        _check_first(first)
        where = ["created_position > ?"]
        params: list[object] = [decode_cursor("workflow", after) or 0]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        rows = self.backend.query(
            f"SELECT * FROM workflows WHERE {' AND '.join(where)}"  # noqa: S608
            " ORDER BY created_position LIMIT ?",
            [*params, first + 1],
        )
        return _page(rows, "workflow", "created_position", first)

    def workflow(self, workflow_id: str) -> Row | None:
        rows = self.backend.query("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
        return rows[0] if rows else None

    def workflow_versions(self, workflow_ids: Sequence[str]) -> dict[str, list[Row]]:
        """Every requested version of each workflow, oldest first."""
        found: dict[str, list[Row]] = {w: [] for w in workflow_ids}
        for start in range(0, len(workflow_ids), 500):
            part = list(workflow_ids[start : start + 500])
            for row in self.backend.query(
                "SELECT * FROM workflow_versions"  # noqa: S608
                f" WHERE workflow_id IN ({', '.join('?' * len(part))})"
                " ORDER BY workflow_id, version",
                part,
            ):
                found[row["workflow_id"]].append(row)
        return found

    def api_keys(self, *, first: int = 50, after: str | None = None) -> Page[Row]:
        _check_first(first)
        rows = self.backend.query(
            "SELECT * FROM api_keys WHERE created_position > ? ORDER BY created_position LIMIT ?",
            (decode_cursor("api_key", after) or 0, first + 1),
        )
        return _page(rows, "api_key", "created_position", first)

    def audit_log(
        self,
        *,
        first: int = 20,
        after: str | None = None,
        actor: str | None = None,
        aggregate_id: str | None = None,
        types: TypeFilter | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Page[Row]:
        """Newest first, filtered by the event-type patterns of DESIGN §4."""
        _check_first(first)
        check_filter("actor", actor)
        where: list[str] = []
        params: list[object] = []
        cursor = decode_cursor("audit", after)
        if cursor is not None:
            where.append("position < ?")
            params.append(cursor)
        for column, op, value in (
            ("actor", "=", actor),
            ("aggregate_id", "=", aggregate_id),
            ("occurred_at", ">=", since),
            ("occurred_at", "<", until),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if types is not None:
            clause, values = _type_clause(types)
            where.append(clause)
            params += values
        sql = "SELECT * FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.backend.query(sql + " ORDER BY position DESC LIMIT ?", [*params, first + 1])
        return _page(rows, "audit", "position", first)
