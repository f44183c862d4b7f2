"""What every ``lightning`` command shares: opening the configured deployment, turning errors
into a message and an exit code, parsing ids and times."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID

import typer
from rich.console import Console
from rich.markup import escape

from ..bootstrap import Lightning
from ..config import Settings
from ..domain.errors import LightningError, ValidationFailed
from ..domain.limits import check_time
from ..services import Principal
from ..store.outages import is_transient

out = Console()
err = Console(stderr=True)

EXIT_CODES = {
    "BAD_USER_INPUT": 2,
    "NOT_FOUND": 3,
    "CONFLICT": 4,
    "FORBIDDEN": 5,
    "UNAUTHENTICATED": 5,
    "UNAVAILABLE": 6,
}


def fail(code: str, message: str) -> typer.Exit:
    err.print(f"[red]error[/red] ({code}): {escape(message)}", highlight=False)
    return typer.Exit(EXIT_CODES.get(code, 1))


@contextmanager
def lightning() -> Iterator[Lightning]:
    """Open the configured store; turn domain errors and outages into a message and an exit
    code."""
    try:
        with Lightning.open(Settings()) as opened:
            yield opened
    except LightningError as exc:
        raise fail(exc.code, exc.message) from None
    except Exception as exc:
        if not is_transient(exc):
            raise
        raise fail("UNAVAILABLE", f"the database is unavailable: {exc}") from None


def operator() -> Principal:
    """Who runs this command, as the log records it (``cli:<os-user>``)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (a container without passwd)
        user = "unknown"
    return Principal(actor=f"cli:{user}", role="admin")


def parse_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed(f"{value!r} is not a valid id") from None


POSITION_MAX = 2**63 - 1  # the store's positions and versions are 64-bit


def parse_time(value: str) -> datetime:
    """An ISO-8601 time (without a zone: UTC) between 1970 and 2999 in UTC."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{value[:60]!r} is not an ISO-8601 time") from None
    return check_time(parsed, "time")
