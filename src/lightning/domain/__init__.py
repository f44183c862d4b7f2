"""Pure domain: aggregates, commands, events and invariants. No I/O, no clock, no randomness."""

from .catalogue import Catalogue
from .errors import (
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    LightningError,
    NotFound,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from .messages import Command, DomainEvent

__all__ = [
    "Catalogue",
    "Command",
    "ConcurrencyConflict",
    "Conflict",
    "DomainEvent",
    "Forbidden",
    "LightningError",
    "NotFound",
    "Unauthenticated",
    "Unavailable",
    "ValidationFailed",
]
