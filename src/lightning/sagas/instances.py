"""Saga instances as stored (table ``saga_instances``, written by the saga handlers in their
consumer's transaction) and as operators see them (GraphQL ``sagas``, ``lightning sagas``).

An instance is PARKED while the consumer holds an event of its key parked for its saga: that
status is read from the parking table, never stored, so it ends the moment the events are
retried or skipped. An instance whose very first event was parked has no row yet; it is shown
from its parked events alone.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..domain.errors import NotFound, ValidationFailed
from ..store.backends import Backend, Row, Tx
from ..store.envelope import format_time
from .base import Instance, Saga, Step

KIND = "sagas"  # the consumer kind (its queue, its worker command)
STATUSES = ("RUNNING", "WAITING", "COMPLETED", "COMPENSATED", "FAILED", "PARKED")
_COLUMNS = (
    "saga",
    "instance",
    "status",
    "correlation_id",
    "started_position",
    "position",
    "state",
    "steps",
    "failure_reason",
    "next_timer_at",
    "started_at",
    "updated_at",
)


# ---- the handlers' side ----------------------------------------------------------------------


def rows(tx: Tx, saga: str, keys: Sequence[str]) -> list[Row]:
    found: list[Row] = []
    for start in range(0, len(keys), 500):
        part = list(keys[start : start + 500])
        found += tx.all(
            "SELECT * FROM saga_instances WHERE saga = ?"  # noqa: S608 (placeholders only)
            f" AND instance IN ({', '.join('?' * len(part))})",
            [saga, *part],
        )
    return found


def load(tx: Tx, saga: Saga[Any], keys: Sequence[str]) -> dict[str, Instance[Any]]:
    return {row["instance"]: _instance(saga, row) for row in rows(tx, saga.name, keys)}


def _instance(saga: Saga[Any], row: Row) -> Instance[Any]:
    return Instance(
        saga=row["saga"],
        id=row["instance"],
        status=row["status"],
        correlation_id=UUID(row["correlation_id"]),
        started_position=int(row["started_position"]),
        state=saga.state_type.model_validate_json(row["state"]),
        steps=tuple(_step(s) for s in json.loads(row["steps"])),
        failure_reason=row["failure_reason"],
        next_timer_at=_time(row["next_timer_at"]),
    )


def save(tx: Tx, changed: Sequence[tuple[Instance[Any], int]], now: datetime) -> None:
    """Insert or update instances, each with the position of the last event it applied."""
    if not changed:
        return
    at = format_time(now)
    updates = ", ".join(
        f"{c}=excluded.{c}" for c in _COLUMNS if c not in ("saga", "instance", "started_at")
    )
    tx.execute_many(
        f"INSERT INTO saga_instances ({', '.join(_COLUMNS)})"  # noqa: S608
        f" VALUES ({', '.join('?' * len(_COLUMNS))})"
        f" ON CONFLICT (saga, instance) DO UPDATE SET {updates}",
        [_row(instance, position, at) for instance, position in changed],
    )


def _row(instance: Instance[Any], position: int, at: str) -> list[object]:
    return [
        instance.saga,
        instance.id,
        instance.status,
        str(instance.correlation_id),
        instance.started_position,
        position,
        instance.state.model_dump_json(),
        json.dumps([_step_json(s) for s in instance.steps], separators=(",", ":")),
        None if instance.failure_reason is None else instance.failure_reason[:2_000],
        None if instance.next_timer_at is None else format_time(instance.next_timer_at),
        at,
        at,
    ]


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "name": step.name,
        "status": step.status,
        "at": None if step.at is None else format_time(step.at),
        "error": step.error,
    }


def _step(value: dict[str, Any]) -> Step:
    return Step(value["name"], value["status"], _time(value.get("at")), value.get("error"))


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# ---- what operators see ------------------------------------------------------------------------


@dataclass(frozen=True)
class SagaView:
    type: str
    id: str
    status: str
    correlation_id: str | None
    steps: tuple[Step, ...]
    next_timer_at: datetime | None
    failure_reason: str | None
    started_position: int
    position: int
    started_at: datetime
    updated_at: datetime
    state: dict[str, Any]

    @classmethod
    def from_row(cls, row: Row) -> SagaView:
        parked = bool(row["parked"])
        return cls(
            type=row["saga"],
            id=row["instance"],
            status="PARKED" if parked else row["status"],
            correlation_id=row["correlation_id"],
            steps=tuple(_step(s) for s in json.loads(row["steps"])),
            next_timer_at=_time(row["next_timer_at"]),
            failure_reason=row["failure_reason"],
            started_position=int(row["started_position"]),
            position=int(row["position"]),
            started_at=datetime.fromisoformat(row["started_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            state=json.loads(row["state"]),
        )


# Every instance with a row, and every parked key without one (its first event was parked).
_ALL = """
SELECT * FROM (
  SELECT s.saga, s.instance, s.status, s.correlation_id, s.started_position, s.position,
         s.state, s.steps, s.failure_reason, s.next_timer_at, s.started_at, s.updated_at,
         EXISTS (SELECT 1 FROM parked_events p WHERE p.consumer = ? AND p.handler = s.saga
                 AND p.key = s.instance) AS parked
  FROM saga_instances s
  UNION ALL
  SELECT p.handler, p.key, 'PARKED', NULL, MIN(p.position), MAX(p.position), '{}', '[]',
         MIN(p.error), NULL, MIN(p.parked_at), MAX(p.parked_at), TRUE
  FROM parked_events p
  WHERE p.consumer = ? AND p.handler IN (%s) AND NOT EXISTS (
    SELECT 1 FROM saga_instances s WHERE s.saga = p.handler AND s.instance = p.key)
  GROUP BY p.handler, p.key
) AS everything
"""

Place = tuple[
    int, str, str
]  # (started_position, saga, instance): the listing's order, newest first


class SagaQueries:
    def __init__(self, backend: Backend, types: Sequence[str]) -> None:
        self.backend = backend
        self.types = list(types)

    def listed(
        self,
        *,
        type: str | None = None,
        status: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> tuple[list[tuple[str, SagaView]], bool]:
        """A page of instances, newest first: (cursor, instance) pairs and whether more follow."""
        where, params = self._filters(type, status)
        place = decode_place(after)
        if place is not None:
            where.append(
                "(started_position < ? OR (started_position = ? AND"
                " (saga > ? OR (saga = ? AND instance > ?))))"
            )
            params += [place[0], place[0], place[1], place[1], place[2]]
        sql = self._all() + (" WHERE " + " AND ".join(where) if where else "")
        found = self.backend.query(
            sql + " ORDER BY started_position DESC, saga, instance LIMIT ?",
            [*self._base_params(), *params, first + 1],
        )
        views = [SagaView.from_row(r) for r in found]
        page = [(encode_place((v.started_position, v.type, v.id)), v) for v in views[:first]]
        return page, len(views) > first

    def counts(self) -> dict[tuple[str, str], int]:
        """(saga type, status) -> how many instances (PARKED counted as such)."""
        found = self.backend.query(
            "SELECT saga, CASE WHEN parked THEN 'PARKED' ELSE status END AS shown, COUNT(*) AS n"  # noqa: S608
            f" FROM ({self._all()}) AS listed GROUP BY saga, shown",
            self._base_params(),
        )
        return {(r["saga"], r["shown"]): int(r["n"]) for r in found}

    def timers(self, now: datetime) -> tuple[int, int]:
        """How many durable timers are pending, and how many of them are overdue by more than
        five seconds (a sign that no scheduler is running)."""
        [row] = self.backend.query(
            "SELECT COUNT(*) AS pending, SUM(CASE WHEN due_at < ? THEN 1 ELSE 0 END) AS overdue"
            " FROM pending_timers",
            (format_time(now - timedelta(seconds=5)),),
        )
        return int(row["pending"]), int(row["overdue"] or 0)

    def get(self, instance: str, type: str | None = None) -> list[SagaView]:
        """Every instance with this id (one per saga type that has it), or only ``type``'s."""
        where, params = self._filters(type, None)
        where.append("instance = ?")
        sql = self._all() + " WHERE " + " AND ".join(where)
        found = self.backend.query(
            sql + " ORDER BY saga", [*self._base_params(), *params, instance]
        )
        if not found:
            shown = instance[:100]
            raise NotFound(f"no saga instance {shown!r}", details={"id": shown})
        return [SagaView.from_row(r) for r in found]

    def _all(self) -> str:
        return _ALL % ", ".join("?" * len(self.types))

    def _base_params(self) -> list[object]:
        return [KIND, KIND, *self.types]

    def _filters(self, type: str | None, status: str | None) -> tuple[list[str], list[object]]:
        where: list[str] = []
        params: list[object] = []
        if type is not None:
            if type not in self.types:
                raise ValidationFailed(
                    f"no saga type {type[:100]!r}; choose one of {', '.join(self.types)}",
                    details={"type": type[:100]},
                )
            where.append("saga = ?")
            params.append(type)
        if status is not None:
            if status not in STATUSES:
                raise ValidationFailed(
                    f"no saga status {status[:100]!r}; choose one of {', '.join(STATUSES)}",
                    details={"status": status[:100]},
                )
            if status == "PARKED":
                where.append("parked")
            else:
                where.append("status = ? AND NOT parked")
                params.append(status)
        return where, params


def encode_place(place: Place) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(place)).encode()).decode()


def decode_place(cursor: str | None) -> Place | None:
    if cursor is None:
        return None
    try:
        if len(cursor) > 1_000:
            raise ValueError("too long")
        position, saga, instance = json.loads(base64.urlsafe_b64decode(cursor))
        if type(position) is not int or not 0 <= position < 2**63:
            raise ValueError(cursor)
        if not all(
            isinstance(v, str) and len(v) <= 200 and "\x00" not in v for v in (saga, instance)
        ):
            raise ValueError(cursor)
    except (ValueError, TypeError, RecursionError, binascii.Error):
        raise ValidationFailed(
            "after is not a cursor from this list", details={"after": cursor[:100]}
        ) from None
    return position, saga, instance
