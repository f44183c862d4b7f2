"""Projection builders: each projection as a tracked consumer over a read store, their status,
lag, rebuild, and waiting for a position (``consistentWith``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..bus.consumer import HEARTBEAT_SECONDS, TrackedConsumer
from ..domain.errors import Unavailable
from ..store.envelope import Envelope
from ..store.event_store import EventStore
from .agents import AgentsProjection
from .api_keys import ApiKeysProjection
from .audit_log import AuditLogProjection
from .base import Projection
from .group import ProjectionGroup
from .store import ReadStore, Tx


def all_projections() -> list[Projection]:
    return [AgentsProjection(), ApiKeysProjection(), AuditLogProjection()]


class ProjectionHandler:
    """A projection bound to a read store: the ``Handler`` a TrackedConsumer drives."""

    def __init__(self, projection: Projection, store: ReadStore) -> None:
        self.projection = projection
        self.store = store
        self.name = projection.name

    def position(self) -> int:
        return self.store.position(self.name)

    def handle(self, envelopes: Sequence[Envelope]) -> None:
        def write(tx: Tx) -> None:
            self.projection.apply_batch(tx, envelopes)

        self.store.apply(self.name, envelopes[-1].position, write)


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    lag: int
    status: str
    error: str | None


STALE_AFTER = 3 * HEARTBEAT_SECONDS


class Progress:
    """In-process notification of projection progress, so waiting is not polling."""

    def __init__(self) -> None:
        self._positions: dict[str, int] = {}
        self._cond = threading.Condition()

    def advanced(self, name: str, position: int) -> None:
        with self._cond:
            self._positions[name] = max(position, self._positions.get(name, 0))
            self._cond.notify_all()

    def wait(self, names: Sequence[str], position: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: all(self._positions.get(n, 0) >= position for n in names), timeout
            )


class Projections:
    def __init__(
        self,
        store: EventStore,
        read_store: ReadStore,
        projections: Sequence[Projection] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.event_store = store
        self.read_store = read_store
        self.projections = list(projections or all_projections())
        self.progress = progress

    def names(self) -> list[str]:
        return [p.name for p in self.projections]

    def group(self) -> ProjectionGroup:
        """Every projection as one consumer (what the workers and the embedded bus run)."""
        progress = self.progress
        return ProjectionGroup(
            self.projections,
            self.read_store,
            self.event_store,
            on_progress=progress.advanced if progress is not None else None,
        )

    def handler(self, name: str) -> ProjectionHandler:
        for projection in self.projections:
            if projection.name == name:
                return ProjectionHandler(projection, self.read_store)
        raise KeyError(name)

    def statuses(self) -> list[ProjectionStatus]:
        head = self.event_store.max_position()
        recorded = self.read_store.statuses()
        now = datetime.now(UTC)
        result = []
        for name in self.names():
            position = self.read_store.position(name)
            row = recorded.get(name, {})
            status = row.get("status") or ("running" if position >= head else "catching_up")
            error = row.get("error")
            if status == "running" and row.get("updated_at"):
                silent = (now - datetime.fromisoformat(row["updated_at"])).total_seconds()
                if silent > STALE_AFTER:
                    # Workers report every HEARTBEAT_SECONDS: none is running this projection.
                    status, error = "stale", f"no worker has reported for {silent:.0f}s"
            result.append(ProjectionStatus(name, position, max(head - position, 0), status, error))
        return result

    def wait_for(self, position: int, timeout: float, names: Sequence[str] | None = None) -> None:
        """Block until the named projections (default: all) have applied ``position``."""
        names = list(names or self.names())
        positions = {n: self.read_store.position(n) for n in names}
        if all(p >= position for p in positions.values()):
            return
        if self.progress is not None:
            for name, known in positions.items():
                self.progress.advanced(name, known)
            if self.progress.wait(names, position, timeout):
                return
        else:
            deadline = time.monotonic() + timeout
            delay = 0.005
            while time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                if all(self.read_store.position(n) >= position for n in names):
                    return
        raise Unavailable(
            f"the read models have not reached position {position} within {timeout:g}s",
            details={"position": position},
        )

    def rebuild(self, name: str) -> int:
        """Empty one projection and re-apply the whole log to it from the store."""
        handler = self.handler(name)
        self.read_store.reset(name, handler.projection.tables)
        return TrackedConsumer(handler, self.event_store).catch_up()
