"""Persistence: the event store (SQLite embedded, PostgreSQL distributed) and the envelope."""

from .backends import Backend, PostgresBackend, SQLiteBackend, open_backend
from .commands import CommandRecord, RepeatedCommand
from .envelope import Envelope, Metadata, format_time, pending
from .event_store import Events, EventStore

__all__ = [
    "Backend",
    "CommandRecord",
    "Envelope",
    "EventStore",
    "Events",
    "Metadata",
    "PostgresBackend",
    "RepeatedCommand",
    "SQLiteBackend",
    "format_time",
    "open_backend",
    "pending",
]
