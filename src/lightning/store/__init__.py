"""Persistence: the event store (SQLite embedded, PostgreSQL distributed) and the envelope."""

from .backends import Backend, PostgresBackend, SQLiteBackend, open_backend
from .envelope import Envelope, Metadata, format_time, pending
from .event_store import EventStore

__all__ = [
    "Backend",
    "Envelope",
    "EventStore",
    "Metadata",
    "PostgresBackend",
    "SQLiteBackend",
    "format_time",
    "open_backend",
    "pending",
]
