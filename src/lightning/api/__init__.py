"""HTTP edge: litestar app, strawberry schema, auth, health and metrics."""

from .app import create_app
from .schema import build_schema

__all__ = ["build_schema", "create_app"]
