"""What is sent: operations generated from the schema with hypothesis-graphql, retyped (for
subscriptions), given plausible values here and there, and with some arguments moved into
variables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from .values import hints, json_node, scalar_strategies, weighted

KINDS = ("query", "mutation", "subscription")


@dataclass(frozen=True)
class Operation:
    kind: str
    query: str
    variables: dict[str, Any]
    operation_name: str | None = None
    nesting: int = 0  # > 0: an undeclared variable nested this deep rides along

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"query": self.query, "variables": self.variables}
        if self.operation_name is not None:
            body["operationName"] = self.operation_name
        return body

    def payload(self) -> bytes:
        """The request body. Built by hand around the nested variable: ``json.dumps`` itself
        refuses to nest that deep."""
        text = json.dumps(self.body())
        if self.nesting:
            nested = "[" * self.nesting + "0" + "]" * self.nesting
            comma = ", " if self.variables else ""
            head, _, tail = text.partition('"variables": {')
            text = f'{head}"variables": {{"undeclared": {nested}{comma}{tail}'
        return text.encode()

    def show(self, limit: int = 2_000) -> str:
        text = self.query
        if self.variables:
            text += "\nvariables: " + json.dumps(self.variables, ensure_ascii=True)
        if self.nesting:
            text += f"\nplus an undeclared variable nested {self.nesting} deep"
        if self.operation_name is not None:
            text += f"\noperationName: {self.operation_name!r}"
        if len(text) > limit:
            text = text[:limit] + f"… ({len(text)} characters)"
        return text.encode("utf-8", "backslashreplace").decode()  # lone surrogates stay printable

    def traits(self) -> str:
        """What tells apart failures that the answer alone does not (an HTTP 500 says nothing)."""
        if self.nesting:
            return f"a variable nested {self.nesting} deep"
        if self.operation_name is not None:
            return f"operationName {self.operation_name!r}"
        try:
            (op,) = graphql.parse(self.query, no_location=True).definitions
        except (graphql.GraphQLError, ValueError):
            return self.kind
        assert isinstance(op, graphql.OperationDefinitionNode)
        roots = sorted(
            {
                getattr(s, "name", graphql.NameNode(value="…")).value
                for s in op.selection_set.selections
            }
        )
        return f"{self.kind} {' '.join(roots)}"

    def __repr__(self) -> str:
        return f"{self.kind}:\n{self.show()}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _keep(document: graphql.DocumentNode) -> graphql.DocumentNode:
    return document


def _subscription_root(schema: graphql.GraphQLSchema) -> graphql.GraphQLSchema:
    """The schema with its Subscription type as the query root: hypothesis-graphql generates
    queries and mutations only; the document is retyped to a subscription afterwards."""
    assert schema.subscription_type is not None
    return graphql.GraphQLSchema(
        query=schema.subscription_type, types=list(schema.type_map.values())
    )


def documents(
    schema: graphql.GraphQLSchema,
    kind: str,
    scalars: dict[str, st.SearchStrategy[graphql.ValueNode]],
    mode: Mode,
) -> st.SearchStrategy[graphql.DocumentNode]:
    options: dict[str, Any] = {"custom_scalars": scalars, "print_ast": _keep, "mode": mode}
    if kind == "query":
        return queries(schema, **options)
    if kind == "mutation":
        return mutations(schema, **options)
    return queries(_subscription_root(schema), **options)


class _Hint(graphql.Visitor):
    """Replaces some values (a coin toss each) with a plausible one from ``hints``."""

    def __init__(
        self,
        type_info: graphql.TypeInfo,
        hints: dict[tuple[str, str], st.SearchStrategy[Any]],
        draw: st.DrawFn,
    ) -> None:
        super().__init__()
        self.type_info = type_info
        self.hints = hints
        self.draw = draw

    def _value(self, name: str, type_: graphql.GraphQLInputType | None) -> graphql.ValueNode | None:
        if type_ is None:
            return None
        hint = self.hints.get((name, graphql.get_named_type(type_).name))
        if hint is None or not self.draw(st.booleans()):
            return None
        value = self.draw(hint)
        is_list = graphql.is_list_type(graphql.get_nullable_type(type_))
        return json_node(value) if is_list == isinstance(value, list) else None

    def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> graphql.ArgumentNode | None:
        argument = self.type_info.get_argument()
        value = self._value(node.name.value, argument.type if argument else None)
        return None if value is None else graphql.ArgumentNode(name=node.name, value=value)

    def enter_object_field(
        self, node: graphql.ObjectFieldNode, *_: Any
    ) -> graphql.ObjectFieldNode | None:
        value = self._value(node.name.value, self.type_info.get_input_type())
        return None if value is None else graphql.ObjectFieldNode(name=node.name, value=value)


class _Hoist(graphql.Visitor):
    """Moves the arguments ``choose`` picks into variables (coerced by ``parse_value`` rather
    than ``parse_literal``: another path through every scalar and input type)."""

    def __init__(self, type_info: graphql.TypeInfo, choose: Callable[[], bool]) -> None:
        super().__init__()
        self.type_info = type_info
        self.choose = choose
        self.definitions: list[graphql.VariableDefinitionNode] = []
        self.values: dict[str, Any] = {}

    def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> graphql.ArgumentNode | None:
        argument = self.type_info.get_argument()
        if argument is None or isinstance(node.value, graphql.VariableNode) or not self.choose():
            return None
        name = f"v{len(self.definitions)}"
        variable = graphql.VariableNode(name=graphql.NameNode(value=name))
        self.values[name] = graphql.value_from_ast_untyped(node.value)
        self.definitions.append(
            graphql.VariableDefinitionNode(
                variable=variable, type=graphql.parse_type(str(argument.type)), directives=()
            )
        )
        return graphql.ArgumentNode(name=node.name, value=variable)


def _operation_node(
    document: graphql.DocumentNode,
    kind: str,
    definitions: Sequence[graphql.VariableDefinitionNode] = (),
) -> graphql.DocumentNode:
    (op,) = document.definitions
    assert isinstance(op, graphql.OperationDefinitionNode)
    retyped = graphql.OperationDefinitionNode(
        operation=graphql.OperationType(kind),
        name=op.name,
        variable_definitions=tuple(definitions),
        directives=op.directives or (),
        selection_set=op.selection_set,
    )
    return graphql.DocumentNode(definitions=(retyped,))


def shape(
    schema: graphql.GraphQLSchema,
    document: graphql.DocumentNode,
    kind: str,
    draw: st.DrawFn,
    hints: dict[tuple[str, str], st.SearchStrategy[Any]] | None = None,
) -> tuple[graphql.DocumentNode, dict[str, Any]]:
    """Retype ``document`` to ``kind``, give some values a plausible one (``hints``), then
    move some arguments into variables."""
    document = _operation_node(document, kind)
    if hints:
        type_info = graphql.TypeInfo(schema)
        hinter = _Hint(type_info, hints, draw)
        document = graphql.visit(document, graphql.TypeInfoVisitor(type_info, hinter))
    type_info = graphql.TypeInfo(schema)
    hoister = _Hoist(type_info, lambda: draw(st.booleans()))
    edited = graphql.visit(document, graphql.TypeInfoVisitor(type_info, hoister))
    return _operation_node(edited, kind, hoister.definitions), hoister.values


def _rarely(draw: st.DrawFn, strategy: st.SearchStrategy[Any], one_in: int) -> Any:
    # Not 0 nor the top: hypothesis draws the ends of a range far more often than 1 in n.
    return draw(strategy) if draw(st.integers(0, one_in - 1)) == one_in // 2 else None


def operations(
    schema: graphql.GraphQLSchema,
    pool: Sequence[str],
    kinds: Sequence[str] = KINDS,
    negative: bool = True,
) -> st.SearchStrategy[Operation]:
    """Operations of ``kinds``: valid ones and (with ``negative``) ones with one schema
    violation; a few with an ``operationName`` the document lacks, or an undeclared deeply
    nested variable."""
    scalars = scalar_strategies(pool)
    plausible = hints(datetime.now(UTC))
    modes = (Mode.POSITIVE, Mode.NEGATIVE) if negative else (Mode.POSITIVE,)
    weights = {Mode.POSITIVE: 3, Mode.NEGATIVE: 1}
    generated = weighted(
        *(
            (
                weights[mode],
                st.tuples(st.just((kind, mode)), documents(schema, kind, scalars, mode)),
            )
            for kind in kinds
            for mode in modes
        )
    )

    @st.composite
    def operation(draw: st.DrawFn) -> Operation:
        (kind, mode), document = draw(generated)
        # No hints for a negative document: they could repair its one violation.
        valid = plausible if mode == Mode.POSITIVE else None
        edited, variables = shape(schema, document, kind, draw, valid)
        nesting = _rarely(draw, st.sampled_from((33, 1_000, 10_000)), 25) or 0
        name = _rarely(draw, st.sampled_from(("Missing", "", "\x00")), 25)
        return Operation(kind, graphql.print_ast(edited), variables, name, nesting)

    return operation()
