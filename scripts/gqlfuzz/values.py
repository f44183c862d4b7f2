"""Values for the generated documents: a strategy per scalar (the built-in ones too, to reach
past the first check of a resolver) and plausible values by argument name (``hints``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import nodes

MIN_INT, MAX_INT = -(2**31), 2**31 - 1


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of ``choices``, each as often as its weight (the first is where shrinking goes)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def _pick(pool: Sequence[str]) -> st.SearchStrategy[str]:
    # An index, not sampled_from: the script's pool grows with ids seen in answers.
    return st.integers(0, 10**6).map(lambda i: pool[i % len(pool)])


def _ids(pool: Sequence[str]) -> st.SearchStrategy[graphql.ValueNode]:
    garbage = st.one_of(
        st.uuids().map(str),
        st.just("00000000-0000-0000-0000-000000000000"),
        st.text(max_size=40),
        _pick(pool).map(str.upper) if pool else st.just("X"),
        _pick(pool).map(lambda i: i.replace("-", "")) if pool else st.just("Y"),
    )
    strings = weighted((3, _pick(pool)), (2, garbage)) if pool else garbage
    return weighted(
        (6, strings.map(nodes.String)), (1, st.integers(MIN_INT, MAX_INT).map(nodes.Int))
    )


_OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_EDGE_TIMES = (
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "2999-12-31T23:59:59Z",
    "3000-01-01T00:00:00+00:00",
    "2036-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-11-23",
    "2026-11-23T10:00:00.000000Z",
    "2026-11-23T10:00:00+24:00",
    "now",
    "",
    "T",
)


def _times() -> st.SearchStrategy[graphql.ValueNode]:
    anywhen = st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
    )
    recent = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2050, 1, 1))
    iso = st.one_of(anywhen, recent).flatmap(
        lambda moment: st.one_of(st.none(), _OFFSETS).map(
            lambda zone: moment.replace(tzinfo=zone).isoformat()
        )
    )
    text = weighted((4, iso), (3, st.sampled_from(_EDGE_TIMES)), (1, st.text(max_size=30)))
    return weighted(
        (8, text.map(nodes.String)),
        (1, st.integers(MIN_INT, MAX_INT).map(nodes.Int)),
        (1, st.booleans().map(nodes.Boolean)),
    )


_NAME = st.from_regex(r"[_A-Za-z][_0-9A-Za-z]{0,7}", fullmatch=True)


def json_node(value: Any) -> graphql.ValueNode:
    if value is None:
        return nodes.Null
    if isinstance(value, bool):
        return nodes.Boolean(value)
    if isinstance(value, int):
        return nodes.Int(value)
    if isinstance(value, float):
        return nodes.Float(value)
    if isinstance(value, str):
        return nodes.String(value)
    if isinstance(value, list):
        return nodes.List([json_node(v) for v in value])
    return nodes.Object(
        [
            graphql.ObjectFieldNode(name=graphql.NameNode(value=k), value=json_node(v))
            for k, v in value.items()
        ]
    )


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def _json() -> st.SearchStrategy[graphql.ValueNode]:
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    values = st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(_NAME, children, max_size=4)
        ),
        max_leaves=16,
    )
    deep = st.sampled_from((31, 32, 33, 100)).map(nested)
    return weighted((6, values), (1, deep)).map(json_node)


_WORDS = (
    "grok", "grok-code-fast-1", "grok-beta", "openai", "gpt-4o", "coder", "fuzz",
    "admin", "operator", "viewer", "root", "standard", "high_security", "low_security",
    "active", "retired", "revoked", "expired", "running", "degraded",
    "*", "agent.*", "agent.registered", "agent.reconfigured", "agent.retired", "api_key.*",
    "api_key.issued", "api_key.revoked", "*.*", "agent.", ".*", "agent.**",
    "projections", "agents", "api_keys", "audit_log", "system", "admin:bootstrap",
    "", " ", "\x00", "a\x00b", "\t", "\n", "\u200b", "\ud7ff", "\ufeff", "é" * 3,
    "\ud800", "x\udfffy",
)  # fmt: skip


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _cursors() -> st.SearchStrategy[str]:
    numbers = st.one_of(
        st.integers(0, 50), st.integers(-(2**70), 2**70), st.sampled_from((2**63 - 1, 2**63, -1))
    )
    plain = st.builds(
        lambda kind, n: _b64(f"{kind}:{n}"),
        st.sampled_from(("agent", "api_key", "audit", "audit_log", "", "x")),
        numbers,
    )
    parked = st.builds(
        lambda parts, n: _b64(json.dumps([*parts, n])),
        st.lists(
            st.sampled_from(("projections", "agents", "x", "\x00", "")), min_size=0, max_size=4
        ),
        numbers,
    )
    return st.one_of(plain, parked, st.text(max_size=20).map(_b64))


def _long_text() -> st.SearchStrategy[str]:
    return st.builds(
        lambda char, n: char * n,
        st.sampled_from(("a", "é", "\x00", "\n", "😀")),
        st.sampled_from((100, 101, 200, 201, 2_000, 2_001, 32_768, 32_769, 70_000, 300_000)),
    )


def _strings(pool: Sequence[str]) -> st.SearchStrategy[graphql.ValueNode]:
    actors = _pick(pool).map(lambda i: f"key:{i}") if pool else st.just("key:")
    texts = weighted(
        (5, st.sampled_from(_WORDS)),
        (4, st.text()),
        (2, _cursors()),
        (1, actors),
        (1, st.lists(st.sampled_from(_WORDS[:12]), max_size=80).map("".join)),
        (1, _long_text()),
    )
    return texts.map(nodes.String)


def _ints() -> st.SearchStrategy[graphql.ValueNode]:
    edges = st.sampled_from(
        (0, 1, -1, 2, 100, 499, 500, 501, 1_000, 1_001, 3_600, MAX_INT, MIN_INT)
    )
    return weighted((3, st.integers(0, 30)), (2, edges), (2, st.integers(MIN_INT, MAX_INT))).map(
        nodes.Int
    )


def _floats() -> st.SearchStrategy[graphql.ValueNode]:
    edges = st.sampled_from((0.0, 0.2, 1.0, 2.0, 2.0000001, 2.5, -0.0, -1.0, 1e308, -1e308, 5e-324))
    return weighted(
        (3, st.floats(0, 2)), (2, edges), (1, st.floats(allow_nan=False, allow_infinity=False))
    ).map(nodes.Float)


def scalar_strategies(pool: Sequence[str]) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Values for every scalar: the built-in ones too, to reach past the first check."""
    return {
        "ID": _ids(pool),
        "DateTime": _times(),
        "JSON": _json(),
        "String": _strings(pool),
        "Int": _ints(),
        "Float": _floats(),
    }


def hints(now: datetime) -> dict[tuple[str, str], st.SearchStrategy[Any]]:
    """Plausible values for arguments and input fields by (name, named type): garbage alone
    rarely gets past the first check of a command, and the bugs are often behind it."""
    patterns = st.sampled_from(("*", "agent.*", "api_key.*", "agent.registered", "api_key.issued"))
    prose = st.text(st.characters(categories=["L", "N", "P", "Zs"]), max_size=60)
    soon = st.integers(-86_400, 11 * 365 * 86_400).map(
        lambda s: (now + timedelta(seconds=s)).isoformat()
    )
    return {
        ("role", "String"): st.sampled_from(("admin", "operator", "viewer")),
        ("provider", "String"): st.just("grok"),
        ("model", "String"): st.sampled_from(("grok-code-fast-1", "grok-beta")),
        ("rotationPolicy", "String"): st.sampled_from(
            ("standard", "high_security", "low_security")
        ),
        ("name", "String"): st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True),
        ("description", "String"): prose,
        ("systemPrompt", "String"): prose,
        ("reason", "String"): prose,
        ("tools", "String"): st.lists(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), max_size=5),
        ("status", "String"): st.sampled_from(("active", "retired", "revoked")),
        ("after", "String"): st.none(),
        ("types", "String"): st.lists(patterns, max_size=3),
        ("temperature", "Float"): st.floats(0, 2),
        ("maxTokens", "Int"): st.integers(1, 200_000),
        ("first", "Int"): st.integers(1, 500),
        ("after", "Int"): st.integers(0, 50),
        ("version", "Int"): st.integers(1, 5),
        ("consistentWith", "Int"): st.integers(0, 20),
        ("gracePeriodSeconds", "Int"): st.integers(0, 30 * 86_400),
        **{(name, "DateTime"): soon for name in ("expiresAt", "asOf", "since", "until")},
    }
