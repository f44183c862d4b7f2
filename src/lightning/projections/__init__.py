"""Read models: one module per projection, the read store with tracking, and the runner."""

from .base import Projection
from .queries import Page, ReadModels
from .runner import Progress, ProjectionHandler, Projections, ProjectionStatus, all_projections
from .store import ReadStore, open_read_store

__all__ = [
    "Page",
    "Progress",
    "Projection",
    "ProjectionHandler",
    "ProjectionStatus",
    "Projections",
    "ReadModels",
    "ReadStore",
    "all_projections",
    "open_read_store",
]
