"""The GraphQL document budget of DESIGN §6, measured without running anything."""

from __future__ import annotations

import asyncio
import time

import pytest
from graphql import get_introspection_query, parse

from lightning.api import build_schema
from lightning.api.limits import (
    Budget,
    DocumentCache,
    Limits,
    Refused,
    ResourceLimits,
    nesting,
    prescan,
    too_many_tokens,
)

SCHEMA = build_schema()._schema
BUDGET = Budget.of(SCHEMA, Limits())


def measure(document: str, variables: dict[str, object] | None = None) -> int:
    return BUDGET.measure(parse(document), None, variables).cost


def test_each_field_costs_one_and_first_multiplies_what_it_pages() -> None:
    assert measure("{ agents(first: 10) { edges { node { id name } } } }") == 1 + 10 * 4
    assert measure("{ agents { edges { node { id } } } }") == 1 + 50 * 3  # the default first


def test_cost_is_computed_with_the_requests_variables() -> None:
    document = "query($n: Int!) { agents(first: $n) { edges { node { id } } } }"
    assert measure(document, {"n": 2}) == 7
    with pytest.raises(Refused, match="cost"):
        page = "agents(first: $n) { edges { node { id name status model provider } } }"
        measure(f"query($n: Int!) {{ a: {page} b: {page} c: {page} }}", {"n": 500})


@pytest.mark.parametrize("first", [0, -1, 501, 10**9])
def test_first_lies_in_1_to_500(first: int) -> None:
    with pytest.raises(Refused, match="first"):
        measure("query($n: Int!) { events(first: $n) { id } }", {"n": first})


def test_fragments_count_each_time_they_are_spread_but_are_walked_once() -> None:
    doubling = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
    document = f"{{ ...F0 }} {doubling} fragment F30 on Query {{ projections {{ name }} }}"
    started = time.perf_counter()
    with pytest.raises(Refused, match="cost"):
        measure(document)  # 2**30 spreads: refused, and measured in no time
    assert time.perf_counter() - started < 0.5


def test_a_fragment_cycle_is_left_to_the_standard_validation() -> None:
    assert measure("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }") == 0


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }", "aliases"),
        ("{ " + "a { " * 12 + "b" + " }" * 13, "deeper"),
        (
            "mutation { "
            + " ".join(f'r{i}: retireAgent(id: "x") {{ position }}' for i in range(11))
            + " }",
            "mutations",
        ),
        (
            "{ __schema { types { fields { type { fields { type { fields { type { fields"
            " { name } } } } } } } } } }",
            "introspection",
        ),
    ],
)
def test_documents_over_a_limit_are_refused(document: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        measure(document)


def test_the_standard_introspection_query_fits_and_of_type_adds_no_depth() -> None:
    document = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
    )
    measured = BUDGET.measure(parse(document))
    assert measured.depth <= 12
    assert measured.introspection <= BUDGET.introspection


def test_tokens_are_counted_like_graphql_core_does() -> None:
    document = '{ a(x: "s\\"q", y: -1.5e3, z: [1, 2], w: """bl"ock""") @d { ...F } } # c'
    assert not too_many_tokens(document, 27)  # 26 tokens, the comment counted
    assert too_many_tokens(document, 26)
    assert too_many_tokens("{ a " + "@include(if: true) " * 100_000 + "}", 5_000)


def test_json_nesting_is_measured_without_recursion() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = {"a": deep}
    assert nesting(deep, 32)
    assert not nesting({"a": [{"b": [1, 2]}]}, 32)


def test_counting_tokens_is_linear_whatever_the_quotes() -> None:
    for document in (
        '{ a(x: "' + '\\"' * 64_000,  # a string that never closes, one escape after another
        '"""' + "x" * 128_000,  # a block string that never closes
        "#\n" * 64_000,
        '"' * 128_000,
    ):
        started = time.perf_counter()
        too_many_tokens(document, 5_000)
        assert time.perf_counter() - started < 0.05


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }", "aliases"),
        ("{ " + "a { " * 13 + "b" + " }" * 13, "deeper"),
        ("{ a " + "@include(if: true) " * 2_000 + "}", "tokens"),
    ],
)
def test_what_the_text_shows_is_refused_before_parsing(document: str, reason: str) -> None:
    problem = prescan(document, Limits())
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "document",
    [
        get_introspection_query(descriptions=True),  # ofType nests 8 deep without adding depth
        'mutation($i: RegisterAgentInput! = {name: "a", tools: ["x"]}) { r: registerAgent(input:'
        " $i) { position } }",
        "{ " + " ".join(f"a{i}: __typename" for i in range(30)) + " }",
        '{ agents(status: "{{{{ : : :") { edges { node { id } } } }',
    ],
)
def test_what_is_within_the_limits_passes_the_prescan(document: str) -> None:
    assert prescan(document, Limits()) is None


def test_the_prescan_of_a_hostile_document_takes_a_few_milliseconds() -> None:
    document = (
        "{ "
        + " ".join(
            f"a{i}: agents(first: 500) {{ edges {{ node {{ id }} }} }}" for i in range(1_000)
        )
        + " }"
    )
    started = time.perf_counter()
    assert prescan(document, Limits())
    assert time.perf_counter() - started < 0.01


def test_a_cached_document_is_still_costed_with_each_requests_variables() -> None:
    schema = build_schema()
    page = "agents(first: $n) { edges { node { id name status model provider } } }"
    document = f"query($n: Int!) {{ a: {page} b: {page} c: {page} }}"

    def errors(n: int) -> list[str]:
        result = asyncio.run(schema.execute(document, {"n": n}, context_value={}))
        return [e.message for e in result.errors or ()]

    assert not any("cost" in m for m in errors(1))  # passes the limits (then needs a token)
    assert ResourceLimits.documents.get(document) is not None  # parsed once, kept
    assert any("would cost" in m for m in errors(500))  # the same document, refused
    assert not any("cost" in m for m in errors(2))


def test_the_document_cache_is_bounded_by_entries_and_text() -> None:
    cache = DocumentCache(entries=3, chars=40)
    for i in range(5):
        cache.put(f"{{ a{i} }}", parse(f"{{ a{i} }}"))
    assert len(cache) == 3 and cache.get("{ a0 }") is None and cache.get("{ a4 }") is not None
    cache.put("{ " + "b " * 30 + "}", parse("{ " + "b " * 30 + "}"))  # 63 characters
    assert len(cache) == 0  # more text than it may hold: the oldest go first, then itself
    long = "{ " + "c " * 5_000 + "}"
    cache.put(long, parse(long))
    assert cache.get(long) is None  # longer than OFF_LOOP_CHARS: never kept
