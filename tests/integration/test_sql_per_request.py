"""No N+1: the statements a GraphQL request sends to PostgreSQL do not grow with the page it
asks for, and a command sends a fixed few. Counted at psycopg's cursors, over the real HTTP
stack (litestar's test client) on a real database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from lightning.api import create_app
from lightning.bootstrap import Lightning
from lightning.projections import all_projections
from lightning.services import SYSTEM, Context

POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
# strawberry's controller lets litestar infer its ``context`` dependency (its own code)
pytestmark = pytest.mark.filterwarnings("ignore:.*Inferred dependency field:DeprecationWarning")
PAGE = """query($n: Int!) { agents(first: $n) { edges { cursor node {
  id name description provider model temperature maxTokens systemPrompt tools status
  configVersion version workflows { workflowId version } } } pageInfo { hasNextPage endCursor } } }"""
REGISTER = """mutation($name: String!) { registerAgent(input: {name: $name, provider: "grok",
  model: "grok-code-fast-1"}) { position agent { id name configVersion } } }"""


def following_the_log() -> bool:
    """Whether this is a read of the log by position (``EventStore.read``): the live feed's,
    which follows every commit on its own (woken by LISTEN/NOTIFY, or its fallback poll) and
    is no request's. No request reads the log that way."""
    frame = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "read" and code.co_filename.endswith("store/event_store.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class Statements:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        for name in ("execute", "executemany"):
            original = getattr(psycopg.Cursor, name)

            def counted(
                cursor: Any, query: Any, *args: Any, _original: Any = original, **kw: Any
            ) -> Any:
                if not following_the_log():
                    self.sent.append(str(query)[:80])
                return _original(cursor, query, *args, **kw)

            monkeypatch.setattr(psycopg.Cursor, name, counted)

    def during(self, call: Any) -> list[str]:
        before = len(self.sent)
        call()
        return self.sent[before:]


@pytest.fixture
def client(lightning: Lightning) -> Iterator[tuple[TestClient[Any], str]]:
    ctx = Context(SYSTEM)
    for i in range(60):
        lightning.agents.register(ctx, name=f"agent-{i}", provider="grok", model="grok-beta")
    secret = lightning.api_keys.issue(ctx, name="ops", role="operator").secret
    assert secret is not None
    for name in lightning.consumers.handler_names("projections"):  # no workers running:
        lightning.consumers.build(  # what is counted is the request's alone
            "projections", [p for p in all_projections() if p.name == name]
        ).catch_up()
    with TestClient(create_app(lightning=lightning)) as test_client:
        yield test_client, secret


def answer(client: tuple[TestClient[Any], str], query: str, **variables: object) -> Any:
    http, secret = client
    body = http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert body.status_code == 200 and "errors" not in body.json(), body.text
    return body.json()["data"]


@POSTGRES
def test_a_page_costs_the_same_statements_whatever_its_size(
    client: tuple[TestClient[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def page(n: int) -> None:
        assert len(answer(client, PAGE, n=n)["agents"]["edges"]) == n

    page(1)  # the key is read once, then cached
    statements = Statements(monkeypatch)
    small, large = statements.during(lambda: page(5)), statements.during(lambda: page(50))
    assert len(small) == len(large) <= 1, (small, large)  # one SELECT, no key read


@POSTGRES
def test_a_command_sends_a_fixed_few_statements(
    client: tuple[TestClient[Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def register(name: str) -> None:
        answer(client, REGISTER, name=name)

    register("warm-up")
    statements = Statements(monkeypatch)
    sent = statements.during(lambda: register("counted"))
    assert len(sent) <= 8, sent
