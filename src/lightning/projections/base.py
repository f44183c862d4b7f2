"""The projection contract.

A projection turns envelopes into rows of its own tables. ``apply`` runs inside the transaction
that also records the projection's tracking position (see ``store.ReadStore.apply``), so it must
only read and write through the given ``Tx``. Row calculation is kept in pure functions of
(old row, envelope) that unit tests cover without a database.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from ..store.envelope import Envelope, format_time
from .store import Row, Tx


class Projection(ABC):
    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]  # created by event_store/ migrations
    # Wire types this projection reads; None means every event.
    types: ClassVar[frozenset[str] | None] = None

    def wants(self, envelope: Envelope) -> bool:
        return self.types is None or envelope.type in self.types

    @abstractmethod
    def apply(self, tx: Tx, envelope: Envelope) -> None: ...


def upsert(tx: Tx, table: str, key: str, row: Row) -> None:
    columns = list(row)
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c != key)
    tx.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}",
        [row[c] for c in columns],
    )


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def when(envelope: Envelope) -> str:
    return format_time(envelope.occurred_at)


def placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))
