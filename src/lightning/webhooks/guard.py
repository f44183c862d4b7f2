"""The SSRF guard, at send time, for every attempt: the URL's name is resolved, every address
it resolves to must be public (``is_global``, IPv4-mapped and embedded forms included) unless
``LIGHTNING_WEBHOOK_ALLOW_PRIVATE`` is set, and the request then goes to the address that was
checked — the connection is pinned, so a name that resolves differently a moment later (DNS
rebinding) changes nothing. TLS still verifies the certificate against the URL's name (SNI).
Redirects are never followed (the client is made with ``follow_redirects=False``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ..domain.webhooks import is_public, literal_address


class Refused(Exception):
    """This attempt may not be sent (the reason is recorded as the attempt's error)."""


@dataclass(frozen=True)
class Target:
    url: str  # the URL with the checked address in place of the name
    host: str  # the Host header
    sni: str | None  # the name TLS verifies, for https
    address: str


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The checked address to send ``url``'s request to (the caller bounds the time)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"not an http(s) URL: {url[:100]}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = literal_address(parts.hostname)
    try:  # the ASCII form (IDNA) is what is resolved, sent as Host and checked by TLS
        name = parts.hostname if literal else parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise Refused(f"{parts.hostname[:100]!r} is not a valid host name") from None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"{name} does not resolve: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0]) for i in infos))
    if not addresses:
        raise Refused(f"{name} resolves to no address")
    if not allow_private:
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise Refused(f"{name} resolves to {private[0]}, which is not a public address")
    chosen = addresses[0]
    return Target(
        url=_with_address(parts, chosen, port),
        host=parts.netloc.rpartition("@")[2] if literal else _with_port(name, parts.port),
        sni=name if parts.scheme == "https" else None,
        address=str(chosen),
    )


def _with_port(name: str, port: int | None) -> str:
    return name if port is None else f"{name}:{port}"


def _with_address(
    parts: SplitResult, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path or "/", parts.query, ""))
