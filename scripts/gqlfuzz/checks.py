"""What comes back: whatever was sent, an answer is not HTTP 5xx, is a JSON object, and every
GraphQL error in it has an ``extensions.code``, never ``INTERNAL``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

FAILURE_KINDS = ("http_5xx", "internal", "not_json", "no_code", "no_answer")
SERIOUS = frozenset({"http_5xx", "internal", "no_answer"})  # these fail a run


@dataclass(frozen=True)
class Finding:
    kind: str  # one of FAILURE_KINDS
    signature: str  # what makes two findings the same failure
    answer: str


def _path(error: dict[str, Any]) -> str:
    path = error.get("path") or []
    return ".".join(str(p) for p in path if not isinstance(p, int)) or "(no path)"


def _normalised(message: object) -> str:
    return re.sub(r"\d+", "N", str(message))[:120]


def _error_findings(errors: list[Any]) -> list[Finding]:
    found = []
    for error in errors:
        if not isinstance(error, dict):
            found.append(Finding("no_code", "an error that is not an object", json.dumps(error)))
            continue
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, dict) else None
        answer = json.dumps(error, ensure_ascii=True)[:1_500]
        if code is None:
            found.append(Finding("no_code", _normalised(error.get("message")), answer))
        elif code == "INTERNAL":
            found.append(Finding("internal", _path(error), answer))
    return found


def inspect(status: int, content_type: str, text: str) -> list[Finding]:
    """What is wrong with one answer (nothing: an empty list)."""
    found = []
    if status >= 500:
        found.append(Finding("http_5xx", f"HTTP {status}", text[:1_500]))
    try:
        body = json.loads(text)
    except ValueError:
        sig = f"HTTP {status} {content_type.split(';')[0]}: {_normalised(text[:60])}"
        return [*found, Finding("not_json", sig, text[:1_500])]
    if not isinstance(body, dict):
        return [*found, Finding("not_json", f"HTTP {status}: not an object", text[:1_500])]
    errors = body.get("errors")
    if errors is not None and not isinstance(errors, list):
        return [*found, Finding("no_code", "errors is not a list", text[:1_500])]
    return found + _error_findings(errors or [])
