"""The projection contract: a projection is a handler of the ``projections`` consumer kind
(``consumers.Handler``).

A projection turns envelopes into rows of its own tables. ``apply_batch`` runs inside the
consumer's transaction that also records the projection's tracking position, so it must only read
and write through the given ``Tx``. Its ordering key is the aggregate: an event it cannot apply
parks that aggregate for this projection alone. Row calculation is kept in pure functions of
(old row, envelope) that unit tests cover without a database.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from ..store.backends import Row, Tx
from ..store.envelope import Envelope


class Projection(ABC):
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]  # created by event_store/ migrations
    # Wire types this projection reads; None means every event.
    types: ClassVar[frozenset[str] | None] = None

    def wants(self, envelope: Envelope) -> bool:
        return self.types is None or envelope.type in self.types

    def key(self, envelope: Envelope) -> str:
        return envelope.aggregate_key

    @abstractmethod
    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        """This projection's rows for one aggregate."""

    @abstractmethod
    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        """Apply envelopes in order (all new to this projection), in the caller's transaction.
        Implementations batch their reads and writes: a consumer that is behind hands over
        hundreds of envelopes at once."""


class RowProjection(Projection):
    """A projection with one row per aggregate: read the batch's rows in one query, fold each
    envelope into its row with the pure ``row`` function, write the changed rows in one go."""

    table: ClassVar[str]

    @staticmethod
    @abstractmethod
    def row(old: Row | None, envelope: Envelope) -> Row | None: ...

    def snapshot(self, tx: Tx, key: str) -> list[Row]:
        return tx.all(f"SELECT * FROM {self.table} WHERE id = ?", (key,))  # noqa: S608

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        wanted = [e for e in envelopes if self.wants(e)]
        if not wanted:
            return
        rows = select_in(tx, self.table, "id", sorted({e.aggregate_key for e in wanted}))
        changed: dict[str, Row] = {}
        for envelope in wanted:
            key = envelope.aggregate_key
            new = self.row(rows.get(key), envelope)
            if new is not None:
                rows[key] = changed[key] = new
        upsert_many(tx, self.table, "id", list(changed.values()))


def select_in(
    tx: Tx, table: str, key: str, values: Sequence[str], chunk: int = 500
) -> dict[str, Row]:
    found: dict[str, Row] = {}
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        for row in tx.all(
            f"SELECT * FROM {table} WHERE {key} IN ({placeholders(part)})",  # noqa: S608
            part,
        ):
            found[row[key]] = row
    return found


def upsert_many(tx: Tx, table: str, key: str, rows: Sequence[Row]) -> None:
    """Write the rows a batch changed, in bulk (``Tx.upsert_many``)."""
    tx.upsert_many(table, key, rows)


# One encoder made once: ``json.dumps`` with options builds a new one on every call, a third of
# the cost of encoding a small value.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def to_json(value: Any) -> str:
    return _ENCODER.encode(value)


def when(envelope: Envelope) -> str:
    return envelope.occurred_text


def placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
