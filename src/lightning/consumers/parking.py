"""Parked events: what a handler could not apply, and everything of the same key behind it.

Rows are written in the transaction that moves the handler's tracking position past them, so an
event is always either applied, parked, or still ahead of the position — never lost. The first
parked event of a key carries the error and the attempts; those behind it wait with neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..store.backends import Row, Tx

ERROR_MAX = 2_000  # characters of an error message kept


@dataclass(frozen=True)
class ParkedEvent:
    consumer: str
    handler: str
    key: str
    position: int
    type: str
    error: str | None
    attempts: int
    parked_at: str
    skipping: bool = False  # an operator's skip-parked is under way (or was interrupted)

    @classmethod
    def from_row(cls, row: Row) -> ParkedEvent:
        return cls(
            consumer=row["consumer"],
            handler=row["handler"],
            key=row["key"],
            position=int(row["position"]),
            type=row["type"],
            error=row["error"],
            attempts=int(row["attempts"]),
            parked_at=row["parked_at"],
            skipping=row.get("skipping_since") is not None,
        )


@dataclass(frozen=True)
class ParkedFilter:
    consumer: str | None = None
    handler: str | None = None
    key: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (
            ("consumer", self.consumer),
            ("handler", self.handler),
            ("key", self.key),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def park(tx: Tx, events: Sequence[ParkedEvent]) -> None:
    tx.execute_many(
        "INSERT INTO parked_events"
        " (consumer, handler, key, position, type, error, attempts, parked_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (
                e.consumer,
                e.handler,
                e.key,
                e.position,
                e.type,
                None if e.error is None else e.error[:ERROR_MAX],  # made text_safe by batch
                e.attempts,
                e.parked_at,
            )
            for e in events
        ],
    )


def parked_keys(tx: Tx, consumer: str) -> dict[str, set[str]]:
    """handler -> the keys it has parked (read in every batch, under the tracking locks)."""
    return parked_keys_later(tx, consumer)()


def parked_keys_later(tx: Tx, consumer: str) -> Callable[[], dict[str, set[str]]]:
    """``parked_keys``, sent now and read when called (``Tx.later``)."""
    rows = tx.later(
        "SELECT DISTINCT handler, key FROM parked_events WHERE consumer = ?", (consumer,)
    )

    def keys() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in rows():
            found.setdefault(row["handler"], set()).add(row["key"])
        return found

    return keys


Place = tuple[str, str, str, int]  # (consumer, handler, key, position): the listing's order


def listed(
    tx: Tx, which: ParkedFilter, limit: int = 1_000, after: Place | None = None
) -> list[ParkedEvent]:
    """By consumer, handler, key and position; from just after ``after`` (for paging)."""
    where, params = which.where()
    if after is not None:
        where += (
            " AND " if where else " WHERE "
        ) + "(consumer, handler, key, position) > (?, ?, ?, ?)"
        params += list(after)
    rows = tx.all(
        f"SELECT * FROM parked_events{where}"  # noqa: S608 (columns from code)
        " ORDER BY consumer, handler, key, position LIMIT ?",
        [*params, limit],
    )
    return [ParkedEvent.from_row(r) for r in rows]


def counted(tx: Tx, which: ParkedFilter) -> dict[tuple[str, str, str], int]:
    """How many events each (consumer, handler, key) has parked."""
    where, params = which.where()
    rows = tx.all(
        f"SELECT consumer, handler, key, COUNT(*) AS n FROM parked_events{where}"  # noqa: S608
        " GROUP BY consumer, handler, key",
        params,
    )
    return {(r["consumer"], r["handler"], r["key"]): int(r["n"]) for r in rows}


def groups(tx: Tx, which: ParkedFilter) -> list[tuple[str, str, str]]:
    """The (consumer, handler, key) groups with parked events, oldest first."""
    where, params = which.where()
    rows = tx.all(
        f"SELECT consumer, handler, key, MIN(position) AS first FROM parked_events{where}"  # noqa: S608
        " GROUP BY consumer, handler, key ORDER BY first",
        params,
    )
    return [(r["consumer"], r["handler"], r["key"]) for r in rows]


def holding_back(
    tx: Tx, handlers: Sequence[str], position: int, key: str | None = None
) -> list[ParkedEvent]:
    """Parked events at or before ``position`` of these handlers (of one key, if given): what
    keeps their read models from being consistent with ``position``."""
    sql = (
        f"SELECT * FROM parked_events WHERE handler IN ({', '.join('?' * len(handlers))})"  # noqa: S608
        " AND position <= ?"
    )
    params: list[object] = [*handlers, position]
    if key is not None:
        sql += " AND key = ?"
        params.append(key)
    rows = tx.all(sql + " ORDER BY position LIMIT 5", params)
    return [ParkedEvent.from_row(r) for r in rows]


def counts(tx: Tx) -> dict[str, int]:
    """handler -> how many events it has parked."""
    rows = tx.all("SELECT handler, COUNT(*) AS n FROM parked_events GROUP BY handler")
    return {r["handler"]: int(r["n"]) for r in rows}


def failed_again(tx: Tx, event: ParkedEvent, error: str) -> None:
    tx.execute(
        "UPDATE parked_events SET error = ?, attempts = attempts + 1"
        " WHERE consumer = ? AND handler = ? AND position = ?",
        (error[:ERROR_MAX], event.consumer, event.handler, event.position),
    )


def mark_skipping(tx: Tx, events: Sequence[ParkedEvent], at: str | None) -> None:
    """Mark (``at``) or unmark (None) events an operator's skip is recording."""
    tx.execute_many(
        "UPDATE parked_events SET skipping_since = ?"
        " WHERE consumer = ? AND handler = ? AND position = ?",
        [(at, e.consumer, e.handler, e.position) for e in events],
    )


def unpark(tx: Tx, events: Sequence[ParkedEvent], *, only_skipping: bool = False) -> None:
    """Remove these events (with ``only_skipping``: only if still marked by the skip that
    listed them — not rows a rebuild removed and parked afresh meanwhile)."""
    marked = " AND skipping_since IS NOT NULL" if only_skipping else ""
    tx.execute_many(
        "DELETE FROM parked_events WHERE consumer = ? AND handler = ? AND position = ?"  # noqa: S608
        + marked,
        [(e.consumer, e.handler, e.position) for e in events],
    )


def clear(tx: Tx, consumer: str, handler: str) -> None:
    tx.execute("DELETE FROM parked_events WHERE consumer = ? AND handler = ?", (consumer, handler))
