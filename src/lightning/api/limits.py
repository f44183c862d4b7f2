"""What one GraphQL request may cost (DESIGN §6), decided before any resolver runs.

The document is parsed with at most ``tokens`` tokens (strawberry's ``MaxTokensLimiter``), then
measured in one walk of the selected operation — fragments expanded once each and memoised, so a
document of spreads cannot make the walk itself expensive — against the request's own variables:

- depth: nested fields (``ofType`` excepted: it only unwraps a list or non-null type, 1:1);
- aliases: every alias, counted as often as its fragment is spread;
- cost: each field 1, and a field with ``first: n`` multiplies what it pages by n; ``first``
  must lie in 1..``page``;
- mutations: top-level fields of a mutation;
- introspection (``__schema``, ``__type``) is costed with the schema's own list sizes against a
  budget of twice the full standard introspection query, so GraphiQL and code generators work
  and a recursive introspection query does not.

A refused document gets one ``BAD_USER_INPUT`` error and the standard validation never runs.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_introspection_query,
    get_named_type,
    get_operation_ast,
    parse,
    value_from_ast_untyped,
)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from ..config import Settings
from ..projections.queries import MAX_PAGE
from .context import run

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
OFF_LOOP_CHARS = 8_000  # parse and validate a document this long in a worker thread
_PLACEHOLDER = parse("{ __typename }")
# GraphQL's lexical tokens (comments, commas and white space are not tokens), counted in C
# before graphql-core's own lexer (~20 µs a token) ever sees an overlong document.
# Linear: a string left open ends at the end of its line (a block string at the end of the
# document), so no quote makes the scan start over; comments are counted too, so a document of
# nothing but comments stops the count as early as any other.
_TOKENS = re.compile(
    r'#[^\n\r]*|"""(?:[^"\\]+|\\.|"(?!""))*(?:""")?|"(?:[^"\\\n\r]+|\\.)*"?'
    r"|-?\d[\w.+-]*|[A-Za-z_]\w*|\.\.\.|[!$&():=@\[\]{|}]"
)
DOCUMENT_MAX_CHARS = 128 * 1024


def too_many_tokens(document: str, limit: int) -> bool:
    """Whether ``document`` has more than ``limit`` tokens (comments included), decided in
    time linear in the document and mostly in C."""
    return next(itertools.islice(_TOKENS.finditer(document), limit, None), None) is not None


def prescan(document: str, limits: Limits) -> str | None:
    """Why ``document`` is over a limit that its text alone shows — tokens, aliases written in
    it, selection sets nested too deep — or None. One pass over at most ``limits.tokens``
    tokens, a millisecond or two, where graphql-core takes ~50 ms to parse 4,000 tokens: a
    hostile document is refused before it costs more than a well-behaved one. (The walk of the
    parsed document then counts what the text cannot show: fragments as often as spread.)"""
    parens = depth = aliases = 0
    counted: list[bool] = []  # per open selection set: whether it adds a level
    previous = ""
    for count, match in enumerate(_TOKENS.finditer(document), start=1):
        if count > limits.tokens:
            return f"the document has more than {limits.tokens:,} tokens"
        lexeme = match.group()
        if lexeme == "(":
            parens += 1
        elif lexeme == ")":
            parens = max(0, parens - 1)
        elif parens or lexeme[0] == "#":
            continue  # arguments, variable definitions and values; comments
        elif lexeme == "{":
            counted.append(previous != "ofType")
            depth += counted[-1]
            if depth > limits.depth:
                return f"the query is nested deeper than {limits.depth} levels"
        elif lexeme == "}" and counted:
            depth -= counted.pop()
        elif lexeme == ":":  # outside parentheses, a colon follows an alias
            aliases += 1
            if aliases > limits.aliases:
                return f"the query uses more than {limits.aliases} aliases"
        previous = lexeme
    return None


FRAGMENT_CHAIN_MAX = 50


@dataclass(frozen=True)
class Limits:
    depth: int = 12
    tokens: int = 5_000
    aliases: int = 30
    cost: int = 10_000
    mutations: int = 10
    page: int = MAX_PAGE
    variables_depth: int = 32
    json_values: int = 20_000  # in one request body or websocket message (commas, counted in C)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            depth=settings.graphql_max_depth,
            tokens=settings.graphql_max_tokens,
            aliases=settings.graphql_max_aliases,
            cost=settings.graphql_max_cost,
            mutations=settings.graphql_max_mutations,
        )


class Refused(Exception):
    """The document is over a limit; the message says which."""


@dataclass
class _Measure:
    cost: int = 0
    introspection: int = 0
    depth: int = 0
    aliases: int = 0
    fields: int = 0  # top-level fields (mutations are counted with it)

    def add(self, other: _Measure, times: int = 1) -> None:
        self.cost += other.cost * times
        self.introspection += other.introspection * times
        self.depth = max(self.depth, other.depth)
        self.aliases += other.aliases
        self.fields += other.fields


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: Mapping[str, Any]
    limits: Limits
    list_sizes: Mapping[str, int]
    memo: dict[str, _Measure] = field(default_factory=dict)
    visiting: list[str] = field(default_factory=list)

    def selections(
        self, node: SelectionSetNode, parent: GraphQLNamedType | None, introspecting: bool
    ) -> _Measure:
        total = _Measure()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                total.add(self.field(selection, parent, introspecting))
                total.fields += 1
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total.add(self.selections(selection.selection_set, inner, introspecting))
            elif isinstance(selection, FragmentSpreadNode):
                total.add(self.spread(selection.name.value, introspecting))
        return total

    def spread(self, name: str, introspecting: bool) -> _Measure:
        key = f"{name}:{introspecting}"
        if key in self.memo:
            return self.memo[key]
        fragment = self.fragments.get(name)
        if fragment is None or name in self.visiting:
            return _Measure()  # unknown or cyclic: the standard validation says so
        if len(self.visiting) >= FRAGMENT_CHAIN_MAX:
            raise Refused(f"fragments are spread more than {FRAGMENT_CHAIN_MAX} deep")
        self.visiting.append(name)
        try:
            parent = self.schema.get_type(fragment.type_condition.name.value)
            measure = self.selections(fragment.selection_set, parent, introspecting)
        finally:
            self.visiting.pop()
        self.memo[key] = measure
        return measure

    def field(
        self, node: FieldNode, parent: GraphQLNamedType | None, introspecting: bool
    ) -> _Measure:
        name = node.name.value
        introspecting = introspecting or name in INTROSPECTION_ROOTS
        definition = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
        child_type = _introspection_type(self.schema, name) if definition is None else None
        if definition is not None:
            child_type = get_named_type(definition.type)
        times = 1
        if introspecting:
            if definition is not None and _is_list(definition.type):
                times = self.list_sizes.get(name, 1)
        else:
            times = self.first(node, definition)
        inner = _Measure()
        if node.selection_set is not None:
            inner = self.selections(node.selection_set, child_type, introspecting)
        measure = _Measure(
            depth=inner.depth + (0 if name == "ofType" else 1),
            aliases=inner.aliases + (1 if node.alias is not None else 0),
        )
        if measure.depth > self.limits.depth:
            raise Refused(f"the query is nested deeper than {self.limits.depth} levels")
        if introspecting:
            measure.introspection = 1 + times * (inner.introspection + inner.cost)
        else:
            measure.cost = 1 + times * inner.cost
            measure.introspection = times * inner.introspection
        if measure.aliases > self.limits.aliases:
            raise Refused(f"the query uses more than {self.limits.aliases} aliases")
        return measure

    def first(self, node: FieldNode, definition: Any) -> int:
        """The page size a field asks for (its default when not given), checked; 1 without."""
        if definition is None or "first" not in definition.args:
            return 1
        value: object = Undefined
        for argument in node.arguments or ():
            if argument.name.value == "first":
                value = argument.value
        if isinstance(value, IntValueNode):
            value = int(value.value)
        elif isinstance(value, VariableNode):
            value = self.variables.get(value.name.value, Undefined)
            if value is Undefined:  # not given, no default: the argument's own default
                value = definition.args["first"].default_value
        elif value is Undefined:
            value = definition.args["first"].default_value
        if value is None or value is Undefined:
            return 1
        if type(value) is not int or not 1 <= value <= self.limits.page:
            raise Refused(f"first must be between 1 and {self.limits.page}")
        return value


def _is_list(type_: Any) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def _introspection_type(schema: GraphQLSchema, name: str) -> GraphQLNamedType | None:
    if name == "__schema":
        return schema.get_type("__Schema")
    if name == "__type":
        return schema.get_type("__Type")
    return None


def _list_sizes(schema: GraphQLSchema) -> dict[str, int]:
    """How long each introspection list of this schema can be."""
    types = list(schema.type_map.values())
    fields = [f for t in types if hasattr(t, "fields") for f in t.fields.values()]
    return {
        "types": len(types),
        "directives": len(schema.directives),
        "fields": max((len(t.fields) for t in types if hasattr(t, "fields")), default=1),
        "inputFields": max(
            (len(t.fields) for t in types if hasattr(t, "fields") and "Input" in t.name),
            default=1,
        ),
        "args": max([len(f.args) for f in fields if hasattr(f, "args")] + [1]),
        "enumValues": max((len(getattr(t, "values", ())) for t in types), default=1),
        "interfaces": 1 + max((len(getattr(t, "interfaces", ())) for t in types), default=0),
        "possibleTypes": len(types),
        "locations": 20,
    }


@dataclass(frozen=True)
class Budget:
    """What one schema allows: the limits, plus what its introspection may cost."""

    schema: GraphQLSchema
    limits: Limits
    list_sizes: Mapping[str, int]
    introspection: int

    @classmethod
    def of(cls, schema: GraphQLSchema, limits: Limits) -> Budget:
        sizes = _list_sizes(schema)
        standard = parse(
            get_introspection_query(
                descriptions=True,
                specified_by_url=True,
                directive_is_repeatable=True,
                schema_description=True,
                input_value_deprecation=True,
            )
        )
        budget = cls(schema, limits, sizes, introspection=10**12)
        return cls(schema, limits, sizes, introspection=2 * budget.measure(standard).introspection)

    def measure(
        self,
        document: DocumentNode,
        operation_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> _Measure:
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            return _Measure()  # the standard validation and execution say what is wrong
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        values = {  # the operation's declared defaults, then what the request gives
            d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        } | dict(variables or {})
        walk = _Walk(self.schema, fragments, values, self.limits, self.list_sizes)
        root = self.schema.get_root_type(operation.operation)
        measure = walk.selections(operation.selection_set, root, False)
        self.check(operation, measure)
        return measure

    def check(self, operation: OperationDefinitionNode, measure: _Measure) -> None:
        limits = self.limits
        if measure.aliases > limits.aliases:
            raise Refused(f"the query uses more than {limits.aliases} aliases")
        if operation.operation == OperationType.MUTATION and measure.fields > limits.mutations:
            raise Refused(
                f"a request may hold at most {limits.mutations} mutations"
                f" (this one has {measure.fields})"
            )
        if measure.cost > limits.cost:
            raise Refused(
                f"the query would cost {measure.cost:,}; at most {limits.cost:,} is allowed"
                " (each field 1, a field with first: n multiplies what it pages by n)"
            )
        if measure.introspection > self.introspection:
            raise Refused(
                "the introspection query would cost more than twice the standard one"
                f" ({measure.introspection:,} > {self.introspection:,})"
            )


def nesting(value: object, limit: int) -> bool:
    """Whether a JSON value nests deeper than ``limit``: walked a level at a time, without
    recursion, looking only into containers."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [c for c in level if isinstance(c, dict | list)]
        if not level:
            return False
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return any(isinstance(c, dict | list) for c in level)


@dataclass
class _Cached:
    document: DocumentNode
    valid_for: tuple[int, tuple[Any, ...]] | None = None  # (schema, rules) it passed


class DocumentCache:
    """Parsed documents by their text, most recently used kept, and whether each passed the
    standard validation (against which schema and rules): a document a client sends again is
    neither parsed nor validated again. The cost limit is not cached: it is measured for every
    request, with that request's variables. Bounded by entries and by the text held (an AST
    takes about 270 bytes per character of a dense document), and only documents up to
    ``OFF_LOOP_CHARS`` are kept, so unique hostile documents cost memory only while they
    displace each other. Used on the event loop only."""

    def __init__(self, *, entries: int = 1_000, chars: int = 512 * 1024) -> None:
        self.entries, self.chars = entries, chars
        self._held: OrderedDict[str, _Cached] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._held)

    def get(self, text: str) -> DocumentNode | None:
        cached = self._held.get(text)
        if cached is None:
            return None
        self._held.move_to_end(text)
        return cached.document

    def put(self, text: str, document: DocumentNode) -> None:
        if len(text) > OFF_LOOP_CHARS or text in self._held:
            return
        self._held[text] = _Cached(document)
        self._size += len(text)
        while len(self._held) > self.entries or self._size > self.chars:
            old, _ = self._held.popitem(last=False)
            self._size -= len(old)

    def valid(
        self, text: object, document: DocumentNode, schema: GraphQLSchema, rules: tuple[Any, ...]
    ) -> bool:
        cached = self._held.get(text) if isinstance(text, str) else None
        return (
            cached is not None
            and cached.document is document
            and cached.valid_for == (id(schema), rules)
        )

    def passed(
        self, text: object, document: DocumentNode, schema: GraphQLSchema, rules: tuple[Any, ...]
    ) -> None:
        cached = self._held.get(text) if isinstance(text, str) else None
        if cached is not None and cached.document is document:
            cached.valid_for = (id(schema), rules)


class ResourceLimits(SchemaExtension):
    """Refuses a document over a limit of DESIGN §6 before the standard validation runs (the
    error carries ``BAD_USER_INPUT``), and parses and validates a long document in a worker
    thread, so it never holds the event loop that serves everyone else. One budget per schema,
    computed once. (The token limit is strawberry's ``MaxTokensLimiter``, installed beside.)"""

    budgets: dict[tuple[int, Limits], Budget] = {}  # noqa: RUF012 (per schema and limits)
    documents = DocumentCache()  # shared by every request of every schema in this process

    def __init__(self, *, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        if context.variables and nesting(context.variables, self.limits.variables_depth):
            context.pre_execution_errors = [
                refusal(f"variables nest deeper than {self.limits.variables_depth} levels")
            ]
        yield

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        query = context.query
        if context.graphql_document is not None or not isinstance(query, str):
            yield
            return
        cached = self.documents.get(query)
        if cached is not None:
            context.graphql_document = cached
        elif len(query) > DOCUMENT_MAX_CHARS:
            context.graphql_document = _PLACEHOLDER
            context.pre_execution_errors = [
                refusal("the document is longer than 128 KiB; pass long values as variables")
            ]
        elif problem := prescan(query, self.limits):
            context.graphql_document = _PLACEHOLDER
            context.pre_execution_errors = [refusal(problem)]
        else:
            parsing = functools.partial(parse, query, **context.parse_options)
            try:
                document = await run(parsing) if len(query) > OFF_LOOP_CHARS else parsing()
            except GraphQLError as error:
                # Reported as the parse error it is: the placeholder only stands in for the
                # document so that strawberry does not parse the whole text again.
                context.graphql_document = _PLACEHOLDER
                context.pre_execution_errors = [error]
            else:
                context.graphql_document = document
                self.documents.put(query, document)
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors is None and document is not None:
            schema = context.schema._schema
            key = (id(schema), self.limits)
            budget = self.budgets.get(key)
            if budget is None or budget.schema is not schema:
                budget = self.budgets[key] = Budget.of(schema, self.limits)
            try:
                # Per request, with its own variables, also for a cached document.
                over_http = (
                    not isinstance(context.context, dict) or "websocket" not in context.context
                )
                if over_http and context.operation_type.value == "subscription":
                    raise Refused("subscriptions run over a websocket (graphql-transport-ws)")
                measured = budget.measure(document, context.operation_name, context.variables)
                keyed = isinstance(context.context, dict) and "idempotency_key" in context.context
                if keyed and (context.operation_type.value != "mutation" or measured.fields != 1):
                    raise Refused(
                        "an Idempotency-Key applies to a request with exactly one mutation;"
                        " give each of several mutations its own commandId"
                    )
            except Refused as exc:
                context.pre_execution_errors = [refusal(str(exc))]
            else:
                rules = tuple(context.validation_rules)
                if self.documents.valid(context.query, document, schema, rules):
                    context.pre_execution_errors = []  # validated before, and it passed
                else:
                    validate = functools.partial(validate_document, schema, document, rules)
                    if isinstance(context.query, str) and len(context.query) > OFF_LOOP_CHARS:
                        errors = await run(validate)
                    else:
                        errors = validate()
                    context.pre_execution_errors = errors
                    if not errors:
                        self.documents.passed(context.query, document, schema, rules)
        yield


def refusal(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})
