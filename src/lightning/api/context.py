"""What every resolver shares: the typed context (the app, the principal), running a blocking
call in a worker thread, argument parsing, waiting for consistency, and the permission gates."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

import anyio.to_thread
from strawberry.permission import BasePermission
from strawberry.types import Info

from ..bootstrap import Lightning
from ..domain.errors import Unauthenticated, ValidationFailed
from ..services import Context, Principal
from ..services.common import Permission

T = TypeVar("T")
MAX_PAGE = 500
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


def ctx_of(info: Info) -> Context:
    return Context(principal_of(info))


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


def charge(info: Info, size: int) -> None:
    """Count ``size`` bytes of event data towards this operation's response, which may hold at
    most 16 MiB (DESIGN §6): refused as soon as it would be more, before it is built. (A
    websocket's context is shared by its operations, so the count is per operation.)"""
    spent: dict[int, int] = info.context.setdefault("response_bytes", {})
    key = id(info.operation)
    if key not in spent and len(spent) >= 64:
        spent.pop(next(iter(spent)))
    spent[key] = spent.get(key, 0) + size
    if spent[key] > RESPONSE_MAX_BYTES:
        raise ValidationFailed(
            "the response would be larger than 16 MiB; ask for less (a smaller first, fewer"
            " fields or aliases)",
            details={"limit": RESPONSE_MAX_BYTES},
        )
