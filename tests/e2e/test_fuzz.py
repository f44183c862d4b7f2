"""Grammar fuzzing, bounded: operations generated from the schema with hypothesis-graphql (by
``scripts/gqlfuzz``, the generator of ``scripts/fuzz.py``) sent to the real server as admin,
operator and viewer. Whatever is sent, the answer is not HTTP 5xx, is JSON, and every GraphQL
error carries a code, never ``INTERNAL``. ``scripts/fuzz.py -n 10000`` is the long run."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lightning.api.schema import build_schema

from .conftest import ADMIN, base_env, start_server

EXAMPLES = 75  # per operation kind

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))  # gqlfuzz sits beside scripts/fuzz.py, not in the package
fuzz = importlib.import_module("gqlfuzz")


@dataclass
class Fuzzed:
    target: Any  # gqlfuzz.Target
    client: httpx.Client
    strategies: dict[str, st.SearchStrategy[Any]]

    def __repr__(self) -> str:
        return f"<server {self.target.url}, ids {self.target.pool}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis prints with it
        printer.text(repr(self))

    def send(self, role: str, operation: Any) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.target.tokens[role]}",
            "Content-Type": "application/json",
        }
        return self.client.post(self.target.url, content=operation.payload(), headers=headers)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """One embedded server for the module, seeded with agents (one retired) and a key; an
    operator and a viewer key issued. Its ids are the fuzzer's real ids (mixed with garbage)."""
    workdir = tmp_path_factory.mktemp("fuzz")
    env = base_env(f"sqlite:///{workdir}/lightning.db")
    with (
        contextlib.contextmanager(start_server)(workdir, env) as server,
        httpx.Client(timeout=30) as client,
    ):
        target = fuzz.prepare(client, f"{server.url}/graphql", ADMIN)
        schema = graphql.build_schema(build_schema().as_str())
        pool = tuple(target.pool)  # fixed: the same draws give the same documents
        strategies = {kind: fuzz.operations(schema, pool, [kind]) for kind in fuzz.KINDS}
        yield Fuzzed(target, client, strategies)


def _check(role: str, operation: Any, response: httpx.Response) -> None:
    sent = f"as {role}:\n{operation.show()}\nanswer ({response.status_code}): {response.text[:800]}"
    assert response.status_code < 500, f"HTTP {response.status_code} {sent}"
    try:
        body = json.loads(response.text)
    except ValueError:
        body = None
    assert isinstance(body, dict), f"not a JSON object {sent}"
    errors = body.get("errors") or []
    codes = [(e.get("extensions") or {}).get("code") for e in errors]
    assert None not in codes, f"an error without extensions.code {sent}"
    assert "INTERNAL" not in codes, f"INTERNAL {sent}"


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # explain: 20 s more, each request
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("kind", fuzz.KINDS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_no_generated_operation_fails_the_server(
    fuzzed: Fuzzed, kind: str, data: st.DataObject
) -> None:
    """Subscriptions are sent over HTTP too: the server must refuse them with a code."""
    role = data.draw(st.sampled_from(fuzz.ROLES), label="role")
    operation = data.draw(fuzzed.strategies[kind], label="operation")
    _check(role, operation, fuzzed.send(role, operation))
