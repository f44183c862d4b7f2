"""The input limits of DESIGN §6, one definition per kind of field.

They bound what a *command* may carry — typed into the command models as annotated types — and
never what an event read back from the store holds: an old log with a longer prompt or more tools
keeps replaying. Every refusal is a ``ValidationFailed`` (``BAD_USER_INPUT``) raised before
anything is appended.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from .errors import ValidationFailed

NAME_MAX = 100
DESCRIPTION_MAX = 2_000
SYSTEM_PROMPT_MAX_BYTES = 32 * 1024
TOOLS_MAX = 64
TOOL_NAME_MAX = 128
REASON_MAX = 500
EVENT_DATA_MAX_BYTES = 256 * 1024
WORKFLOW_NODES_MAX = 200
WORKFLOW_EDGES_MAX = 500
NODE_CONFIG_MAX_BYTES = 16 * 1024
EXPIRY_HORIZON = timedelta(days=3653)  # ten years
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)  # exclusive: times up to the end of 2999

_MULTILINE = frozenset("\n\t")


def control_characters(value: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether ``value`` holds a control, format, surrogate or unassigned character (Unicode
    category C*) other than those ``allowed``. PostgreSQL refuses NUL outright; the others make
    logs and terminals lie."""
    return any(unicodedata.category(c)[0] == "C" and c not in allowed for c in value)


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("limit", message)


def _text(*, most: int, multiline: bool = False, least: int = 0, in_bytes: bool = False) -> object:
    unit = "bytes" if in_bytes else "characters"

    def check(value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass")) if in_bytes else len(value)
        if size < least:
            raise _refuse("must not be empty")
        if size > most:
            raise _refuse(f"is longer than {most:,} {unit}")
        if control_characters(value, _MULTILINE if multiline else frozenset()):
            allowed = " (newline and tab are allowed)" if multiline else ""
            raise _refuse(f"must not contain control characters{allowed}")
        return value

    return AfterValidator(check)


def _tools(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(value) > TOOLS_MAX:
        raise _refuse(f"has more than {TOOLS_MAX} tools")
    return value


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


# Agent and key names: compared after NFC normalisation (a name is the same name however typed).
Name = Annotated[str, AfterValidator(_nfc), _text(most=NAME_MAX, least=1)]
Description = Annotated[str, _text(most=DESCRIPTION_MAX, multiline=True)]
SystemPrompt = Annotated[str, _text(most=SYSTEM_PROMPT_MAX_BYTES, multiline=True, in_bytes=True)]
ToolName = Annotated[str, _text(most=TOOL_NAME_MAX, least=1)]
Tools = Annotated[tuple[ToolName, ...], AfterValidator(_tools)]
Reason = Annotated[str, _text(most=REASON_MAX, multiline=True)]


def check_time(value: datetime, field: str) -> datetime:
    """A time a client gives: zone-less means UTC; it must lie in 1970 to 2999 once in UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValidationFailed(
            f"{field} must lie between 1970 and 2999 (UTC)", details={field: "out of range"}
        )
    return in_utc


def check_expiry(expires_at: datetime, now: datetime) -> datetime:
    """An expiry is in the future and at most ten years ahead."""
    expires_at = check_time(expires_at, "expiresAt")
    if expires_at <= now:
        raise ValidationFailed("expiresAt must be in the future", details={"expiresAt": "past"})
    if expires_at > now + EXPIRY_HORIZON:
        raise ValidationFailed(
            "expiresAt must be at most 10 years ahead", details={"expiresAt": "too far"}
        )
    return expires_at


def check_event_size(event_type: str, encoded: bytes) -> None:
    if len(encoded) > EVENT_DATA_MAX_BYTES:
        raise ValidationFailed(
            f"the {event_type} event would hold {len(encoded):,} bytes of data;"
            f" at most {EVENT_DATA_MAX_BYTES:,} are allowed",
            details={"data": "too large"},
        )
