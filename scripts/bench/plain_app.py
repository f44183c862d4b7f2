"""The api scenario's baseline: a plain litestar app, served by uvicorn like ``lightning serve``
(same server, same defaults: uvloop, httptools, no access log), with no GraphQL, no event store
and no authentication — what the edge costs is the difference.

* ``POST /register``: reads the JSON body the GraphQL client sends (the name from
  ``variables.input`` or, for a document with the input inlined, from the query text), INSERTs
  one ~400-byte jsonb row shaped like an event envelope (as ``append.envelope_like``) and
  COMMITs, then answers a small JSON.
* ``POST /agents``: the SQL the Lightning resolver issues for ``agents(first: 50)``
  (``ReadModels.agents``: ``SELECT * FROM agents WHERE created_position > 0 ORDER BY
  created_position LIMIT 51``), on the same database, answered in the GraphQL response's shape.
* ``GET /health``: for the readiness wait.

An async psycopg_pool pool of ``BENCH_PLAIN_POOL`` (16) connections per server process, on
``BENCH_PLAIN_DATABASE_URL``. The table is created by the bench (``TABLE``), not here, so
several server processes do not race to create it. Run it as::

    uvicorn plain_app:create_app --factory --app-dir scripts/bench --port 8001
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar, get, post
from litestar.datastructures import State
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

TABLE = "CREATE TABLE IF NOT EXISTS bench_plain (id bigserial PRIMARY KEY, body jsonb NOT NULL)"
INSERT = "INSERT INTO bench_plain (body) VALUES (%s) RETURNING id"
# ReadModels.agents (src/lightning/projections/queries.py) with no filter and no cursor, after
# the backend's ``?`` -> ``%s``; its parameters are (0, first + 1).
AGENTS = "SELECT * FROM agents WHERE created_position > %s ORDER BY created_position LIMIT %s"
PAGE = 50
_INLINED_NAME = re.compile(r'name:\s*"([^"]*)"')


def envelope_like(name: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "agent.registered",
        "aggregate_id": str(uuid.uuid4()),
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": "system",
        "data": {
            "name": name,
            "description": "",
            "provider": "grok",
            "model": "grok-code-fast-1",
            "temperature": 0.2,
            "max_tokens": 4096,
            "system_prompt": "",
            "tools": [],
        },
    }


def name_of(body: dict[str, Any]) -> str:
    variables = body.get("variables") or {}
    if "input" in variables:
        return str(variables["input"]["name"])
    found = _INLINED_NAME.search(str(body.get("query", "")))
    return found.group(1) if found else "unnamed"


def cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"agent:{position}".encode()).decode()


@post("/register", status_code=200)
async def register(data: dict[str, Any], state: State) -> dict[str, Any]:
    name = name_of(data)
    pool: AsyncConnectionPool = state.pool
    async with pool.connection() as conn:  # commits on the way out
        cur = await conn.execute(INSERT, (Jsonb(envelope_like(name)),))
        row = await cur.fetchone()
    assert row is not None
    return {"data": {"registerAgent": {"position": row[0], "agent": {"name": name}}}}


@post("/agents", status_code=200)
async def agents(data: dict[str, Any], state: State) -> dict[str, Any]:
    pool: AsyncConnectionPool = state.pool
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(AGENTS, (0, PAGE + 1))
        rows = await cur.fetchall()
    page = rows[:PAGE]
    edges = [
        {
            "node": {
                "id": r["id"],
                "name": r["name"],
                "provider": r["provider"],
                "model": r["model"],
                "configVersion": r["config_version"],
                "status": r["status"],
            }
        }
        for r in page
    ]
    info = {
        "hasNextPage": len(rows) > PAGE,
        "endCursor": cursor(page[-1]["created_position"]) if page else None,
    }
    return {"data": {"agents": {"edges": edges, "pageInfo": info}}}


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    url = os.environ["BENCH_PLAIN_DATABASE_URL"]
    size = int(os.environ.get("BENCH_PLAIN_POOL", "16"))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(url, min_size=size, max_size=size, open=False)
        await pool.open(wait=True)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Litestar([register, agents, health], lifespan=[lifespan])
