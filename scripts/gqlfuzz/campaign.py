"""A campaign against one server: set-up (keys for the roles, seeded aggregates), sending,
recording failures, the summary."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import graphql
import httpx
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from .checks import FAILURE_KINDS, SERIOUS, Finding, inspect
from .operations import Operation

ROLES = ("admin", "operator", "viewer")
UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Target:
    """A server to fuzz: its GraphQL URL, a token per role, and ids that exist there."""

    url: str
    tokens: dict[str, str]
    pool: list[str]
    protected: set[str] = field(default_factory=set)  # the role keys' ids: never fuzzed


@dataclass
class Example:
    role: str
    operation: Operation
    finding: Finding


@dataclass
class Campaign:
    target: Target
    client: httpx.Client
    harvest: bool = True  # add ids seen in answers to the pool
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)  # failing operations per kind
    operations: Counter[str] = field(default_factory=Counter)  # sent, per operation kind
    codes: Counter[str] = field(default_factory=Counter)  # GraphQL error codes seen
    succeeded: int = 0  # answered with data and no error: how deep the generator gets
    failures: dict[str, dict[str, list[Example]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    report: Any = None  # an open file for JSON lines

    def send(self, role: str, operation: Operation) -> list[Finding]:
        headers = {
            "Authorization": f"Bearer {self.target.tokens[role]}",
            "Content-Type": "application/json",
        }
        self.sent += 1
        self.operations[operation.kind] += 1
        try:
            response = self.client.post(
                self.target.url, content=operation.payload(), headers=headers
            )
        except httpx.HTTPError as exc:
            self.statuses["no answer"] += 1
            findings = [Finding("no_answer", type(exc).__name__, str(exc))]
        else:
            self.statuses[str(response.status_code)] += 1
            findings = inspect(
                response.status_code, response.headers.get("content-type", ""), response.text
            )
            codes = re.findall(r'"code":\s*"([A-Z_]+)"', response.text)
            self.codes.update(codes)
            self.succeeded += response.status_code == 200 and not codes and not findings
            if self.harvest:
                self._harvest(response.text)
        for kind in {f.kind for f in findings}:
            self.kinds[kind] += 1
        for finding in findings:
            self._record(Example(role, operation, finding))
        return findings

    def _record(self, example: Example) -> None:
        signature = example.finding.signature
        if example.finding.kind in {"http_5xx", "no_answer"}:
            signature += f" · {example.operation.traits()}"
        elif example.finding.kind == "internal":
            signature = f"{example.operation.kind} {signature}"
        same = self.failures[example.finding.kind][signature]
        same.append(example)
        same.sort(key=lambda e: len(e.operation.show(10**9)))
        del same[3:]
        if self.report is not None:
            line = {
                "kind": example.finding.kind,
                "signature": signature,
                "role": example.role,
                **example.operation.body(),
                "answer": example.finding.answer,
            }
            self.report.write(json.dumps(line) + "\n")

    def _harvest(self, text: str) -> None:
        if len(self.target.pool) >= 300:
            return
        for found in set(re.findall(r'"(?:id|aggregateId)":\s*"([0-9a-f-]{36})"', text)):
            known = found in self.target.protected or found in self.target.pool
            if UUID_SHAPE.match(found) and not known:
                self.target.pool.append(found)

    @property
    def serious(self) -> int:
        return sum(self.kinds[k] for k in SERIOUS)


def summary(campaign: Campaign, examples_per_failure: int = 1) -> str:
    lines = [
        f"operations sent: {campaign.sent} ("
        + ", ".join(f"{kind}: {n}" for kind, n in sorted(campaign.operations.items()))
        + ")",
        "HTTP status codes: "
        + ", ".join(f"{code}: {n}" for code, n in sorted(campaign.statuses.items())),
        f"answered without any error: {campaign.succeeded}",
        "GraphQL error codes: "
        + ", ".join(f"{code}: {n}" for code, n in campaign.codes.most_common()),
        f"HTTP 5xx: {campaign.kinds['http_5xx']}",
        f"INTERNAL errors: {campaign.kinds['internal']} operations",
        f"errors without a code: {campaign.kinds['no_code']} operations",
        f"bodies that are not JSON: {campaign.kinds['not_json']}",
        f"no answer (timeout, connection lost): {campaign.kinds['no_answer']}",
    ]
    for kind in FAILURE_KINDS:
        distinct = campaign.failures.get(kind)
        if not distinct:
            continue
        lines.append(f"\n=== {kind}: {len(distinct)} distinct ===")
        for signature, examples in sorted(distinct.items()):
            lines.append(f"\n--- {kind} · {signature}")
            for example in examples[:examples_per_failure]:
                lines.append(f"role: {example.role}")
                lines.append(example.operation.show())
                lines.append(f"answer: {example.finding.answer[:600]}")
    return "\n".join(lines)


def fuzz(
    campaign: Campaign,
    strategy: st.SearchStrategy[Operation],
    count: int,
    seed: int | None = None,
    progress: Callable[[Campaign], None] | None = None,
) -> None:
    """Send ``count`` generated operations, each as a role drawn at random; record, don't stop."""

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(role=st.sampled_from(ROLES), operation=strategy)
    def step(role: str, operation: Operation) -> None:
        campaign.send(role, operation)
        if progress is not None:
            progress(campaign)

    if seed is not None:
        step = hypothesis_seed(seed)(step)
    step()


def gql(
    client: httpx.Client, url: str, token: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = client.post(
        url,
        json={"query": query, "variables": variables or {}},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"set-up request failed ({response.status_code}): {response.text}")
    data: dict[str, Any] = body["data"]
    return data


ISSUE = """mutation($input: IssueApiKeyInput!) {
  issueApiKey(input: $input) { secret apiKey { id } } }"""
REGISTER = """mutation($input: RegisterAgentInput!) {
  registerAgent(input: $input) { agent { id } } }"""
RETIRE = "mutation($id: ID!) { retireAgent(id: $id) { position } }"


def prepare(client: httpx.Client, url: str, admin: str) -> Target:
    """Issue an operator and a viewer key; seed agents (one retired) and a key to fuzz with."""
    run = uuid.uuid4().hex[:8]
    tokens = {"admin": admin}
    protected: set[str] = set()
    for role in ("operator", "viewer"):
        issued = gql(
            client, url, admin, ISSUE, {"input": {"name": f"fuzz-{role}-{run}", "role": role}}
        )
        tokens[role] = issued["issueApiKey"]["secret"]
        protected.add(issued["issueApiKey"]["apiKey"]["id"])
    pool = []
    for i in range(3):
        agent = {"name": f"fuzz-{run}-{i}", "provider": "grok", "model": "grok-code-fast-1"}
        registered = gql(client, url, admin, REGISTER, {"input": agent})
        pool.append(registered["registerAgent"]["agent"]["id"])
    gql(client, url, admin, RETIRE, {"id": pool[-1]})
    victim = {"name": f"fuzz-victim-{run}", "role": "viewer"}
    pool.append(gql(client, url, admin, ISSUE, {"input": victim})["issueApiKey"]["apiKey"]["id"])
    return Target(url, tokens, pool, protected)


def fetch_schema(client: httpx.Client, url: str, token: str) -> graphql.GraphQLSchema:
    data = gql(client, url, token, graphql.get_introspection_query())
    return graphql.build_client_schema(data)
