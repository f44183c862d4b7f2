"""The named errors every layer raises and the edges translate (GraphQL code, CLI exit)."""

from __future__ import annotations


class LightningError(Exception):
    """Base of every error Lightning reports to a user."""

    code = "INTERNAL"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(LightningError):
    code = "BAD_USER_INPUT"


class NotFound(LightningError):
    code = "NOT_FOUND"


class Conflict(LightningError):
    code = "CONFLICT"


class ConcurrencyConflict(Conflict):
    """Another writer appended to the same stream first; retrying may succeed."""


class Forbidden(LightningError):
    code = "FORBIDDEN"


class Unauthenticated(LightningError):
    code = "UNAUTHENTICATED"


class Unavailable(LightningError):
    code = "UNAVAILABLE"
