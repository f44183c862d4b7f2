"""Read models: one module per projection. The projection builders are one consumer kind
(``projections``: one queue, one worker command) on the consumer mechanism of ``consumers/``."""

from __future__ import annotations

from collections.abc import Callable

from ..consumers import REBUILD_BATCH, ConsumerKind, Consumers, Rebuilt
from ..domain.errors import NotFound
from .agents import AgentsProjection
from .api_keys import ApiKeysProjection
from .audit_log import AuditLogProjection
from .base import Projection
from .queries import Page, ReadModels
from .workflows import WorkflowsProjection

KIND = "projections"


def all_projections() -> list[Projection]:
    return [AgentsProjection(), ApiKeysProjection(), AuditLogProjection(), WorkflowsProjection()]


def projection_builders() -> ConsumerKind:
    """The consumer kind the composition root registers."""
    return ConsumerKind(KIND, all_projections, "read models for GraphQL and the CLI")


def rebuild(
    consumers: Consumers,
    name: str | None = None,
    *,
    batch_size: int = REBUILD_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> Rebuilt:
    """Empty one read model (``name``), or all of them, forget what they parked and apply the
    whole log to them again: one pass over the log for all, in large batches, each read
    model's rows and position committed together (``Consumers.rebuild``).
    ``on_progress(position, head)`` as the slowest read model moves on."""
    projections = all_projections()
    if name is not None:
        projections = [p for p in projections if p.name == name]
        if not projections:
            names = ", ".join(p.name for p in all_projections())
            raise NotFound(f"no projection {name!r}; choose one of {names}")
    tables = [table for p in projections for table in p.tables]
    return consumers.rebuild(
        KIND, projections, tables, batch_size=batch_size, on_progress=on_progress
    )


__all__ = [
    "KIND",
    "Page",
    "Projection",
    "ReadModels",
    "Rebuilt",
    "all_projections",
    "projection_builders",
    "rebuild",
]
