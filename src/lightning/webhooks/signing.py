"""Standard Webhooks signing (https://www.standardwebhooks.com): the body, the headers.

``webhook-signature`` is a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
``"<webhook-id>.<webhook-timestamp>.<body>"``, one entry per secret that signs (during a
rotation's grace both the new and the previous secret sign). A secret is ``whsec_`` and the
base64 of its key bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix)


def key_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def body(event_type: str, timestamp: str, data: Mapping[str, Any], **extra: Any) -> bytes:
    """``{"type", "timestamp", "data"}`` (and, for a key's delivered secret, ``secret``)."""
    payload = {"type": event_type, "timestamp": timestamp, "data": data, **extra}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def headers(
    message_id: str, timestamp: int, secrets: Sequence[str], payload: bytes
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "Lightning-Webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secrets, message_id, timestamp, payload),
    }
