"""Read models: one module per projection. The projection builders are one consumer kind
(``projections``: one queue, one worker command) on the consumer mechanism of ``consumers/``."""

from __future__ import annotations

from ..consumers import ConsumerKind, Consumers, run_to_head
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


def rebuild(consumers: Consumers, name: str) -> int:
    """Empty one read model (and forget what it parked) and apply the whole log to it again.
    The processes that run it should be stopped meanwhile."""
    projection = next((p for p in all_projections() if p.name == name), None)
    if projection is None:
        names = ", ".join(p.name for p in all_projections())
        raise NotFound(f"no projection {name!r}; choose one of {names}")
    consumers.reset(KIND, name, projection.tables)
    return run_to_head(consumers.build(KIND, [projection]))


__all__ = [
    "KIND",
    "Page",
    "Projection",
    "ReadModels",
    "all_projections",
    "projection_builders",
    "rebuild",
]
