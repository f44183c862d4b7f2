"""What every resolver shares: the typed context (the app, the principal), running a blocking
call in a worker thread, argument parsing, waiting for consistency, and the permission gates."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID, uuid5

import anyio.to_thread
from strawberry.permission import BasePermission
from strawberry.types import Info

from ..bootstrap import Lightning
from ..domain.errors import Unauthenticated, ValidationFailed
from ..domain.limits import control_characters
from ..projections.queries import MAX_PAGE
from ..services import Context, Principal
from ..services.common import Permission
from ..store.backends import Row
from ..store.envelope import Envelope

T = TypeVar("T")
RESPONSE_MAX_BYTES = 16 * 1024 * 1024


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def app_of(info: Info) -> Lightning:
    app: Lightning = info.context["lightning"]
    return app


def principal_of(info: Info) -> Principal:
    principal: Principal | None = info.context.get("principal")
    if principal is None:
        raise Unauthenticated("a bearer token is required")
    return principal


def key_changed(info: Info, key_id: UUID) -> None:
    """A command of this request changed an API key: this process forgets what it knew of it
    at once (others within a second: ``credentials``)."""
    credentials = info.context.get("credentials")
    if credentials is not None:
        credentials.forget(key_id)


_COMMAND_IDS = UUID("6f1d2c3b-4a59-4e8d-b7c6-0a1b2c3d4e5f")


def ctx_of(info: Info, command_id: str | None = None) -> Context:
    """The command's context: its principal, and the id the client gave it — ``commandId``,
    else the request's ``Idempotency-Key`` (one mutation only, checked with the limits)."""
    given = command_id if command_id is not None else info.context.get("idempotency_key")
    return Context(principal_of(info), command_id=None if given is None else command_key(given))


def command_key(value: str) -> UUID:
    """A client's command id: a UUID as it is, any other key (1-128 characters, no control
    characters) as the UUID it names."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or control_characters(value):
        raise ValidationFailed(
            "a command id (commandId, Idempotency-Key) has 1 to 128 characters, none of them"
            " control characters",
            details={"commandId": "invalid"},
        )
    try:
        return UUID(value)
    except ValueError:
        return uuid5(_COMMAND_IDS, value)


def uuid_arg(value: str, name: str = "id") -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        shown = str(value)[:40].encode("unicode_escape").decode()
        raise ValidationFailed(f"{name} is not a valid id", details={name: shown}) from None


async def consistent(
    info: Info,
    position: int | None,
    *names: str,
    key: str | None = None,
    check_parked: bool = True,
) -> None:
    """Wait until the named handlers (default: all) have applied ``position`` (of ``key``:
    an aggregate, when the query reads one), without holding a thread while waiting. Queries of
    the handlers' status (not of their read models) pass ``check_parked=False``: a parked event
    does not make a status report inconsistent."""
    if position is None:
        return
    if position < 0:
        raise ValidationFailed("consistentWith must not be negative")
    app = app_of(info)
    head = await run(app.store.max_position)
    if position > head:
        # Nothing will ever reach it: answer now instead of holding a thread for the timeout.
        raise ValidationFailed(
            f"consistentWith {position} is beyond the newest position {head}",
            details={"consistentWith": position, "head": head},
        )
    await app.consumers.wait(
        position,
        names or app.consumers.handler_names(),
        app.settings.consistency_timeout,
        key=key,
        check_parked=check_parked,
    )


class _Requires(BasePermission):
    needed: Permission

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = principal_of(info)
        self.message = f"role {principal.role!r} may not {self.needed} here"
        self.error_extensions = {"code": "FORBIDDEN"}
        return principal.can(self.needed)


class CanRead(_Requires):
    needed = "read"


class CanOperate(_Requires):
    needed = "operate"


class CanAdminister(_Requires):
    needed = "administer"


class _Spent:
    """What one operation's response holds so far; its loads run one at a time."""

    def __init__(self, operation: object) -> None:
        self.operation = operation  # held, so its id is not reused while counted
        self.bytes = 0
        self.lock = asyncio.Lock()


def _spent(info: Info) -> _Spent:
    # A websocket's context is shared by its operations: one count per operation.
    spent: dict[int, _Spent] = info.context.setdefault("response_bytes", {})
    entry = spent.get(id(info.operation))
    if entry is None or entry.operation is not info.operation:
        if len(spent) >= 64:
            spent.pop(next(iter(spent)))
        entry = spent[id(info.operation)] = _Spent(info.operation)
    return entry


def _too_large() -> ValidationFailed:
    return ValidationFailed(
        "the response would be larger than 16 MiB; ask for less (a smaller first, fewer"
        " fields or aliases)",
        details={"limit": RESPONSE_MAX_BYTES},
    )


async def within_budget(
    info: Info, load: Callable[[], Awaitable[T]], size: Callable[[T], int]
) -> T:
    """Run ``load`` and count ``size(result)`` bytes towards this operation's response, which
    may hold at most 16 MiB (DESIGN §6). The loads of one operation (its aliases) run one at a
    time, so once the response is full the next is refused before it reads anything: a
    refused request never holds more than one page beyond the limit."""
    spent = _spent(info)
    async with spent.lock:
        if spent.bytes > RESPONSE_MAX_BYTES:
            raise _too_large()
        result = await load()
        spent.bytes += size(result)
        if spent.bytes > RESPONSE_MAX_BYTES:
            raise _too_large()
        return result


def row_size(row: Row) -> int:
    """About what a read-model row takes in a JSON response."""
    return 64 + sum(len(k) + len(str(v)) for k, v in row.items())


def envelope_size(envelope: Envelope) -> int:
    return 256 + len(json.dumps(envelope.data, separators=(",", ":")))


def check_first(first: int) -> None:
    if not 0 < first <= MAX_PAGE:
        raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}", details={"first": first})
