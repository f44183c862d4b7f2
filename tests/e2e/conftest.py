"""End-to-end fixtures: the real ``lightning serve`` process on a free port, driven over HTTP and
websockets, and the real ``lightning`` CLI."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..integration.webhook_support import receiver  # noqa: F401 (the webhook tests' fixture)

ADMIN = "e2e-admin-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes]

    def gql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = ADMIN
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=30,
        )

    def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = ADMIN
    ) -> Any:
        response = self.gql(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def error(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = ADMIN
    ) -> dict[str, Any]:
        response = self.gql(query, variables, token)
        body = response.json()
        assert body.get("errors"), body
        error: dict[str, Any] = body["errors"][0]
        return error

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, self.workdir, *args, check=check)


def run_cli(
    env: dict[str, str], cwd: Path, *args: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightning.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def start_server(workdir: Path, env: dict[str, str], *args: str) -> Iterator[Server]:
    port = free_port()
    env = env | {"LIGHTNING_PORT": str(port), "LIGHTNING_HOST": "127.0.0.1"}
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "lightning.cli", "serve", *args],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError((workdir / "serve.log").read_text())
        time.sleep(0.1)
    try:
        yield Server(url, env, workdir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")}
    return env | {
        "LIGHTNING_DATABASE_URL": database_url,
        "LIGHTNING_ADMIN_SECRET": ADMIN,
        "LIGHTNING_ENCRYPTION_KEY": os.environ["LIGHTNING_ENCRYPTION_KEY"],
        # The webhook receivers of the tests listen on loopback.
        "LIGHTNING_WEBHOOK_ALLOW_PRIVATE": "true",
        "LIGHTNING_WEBHOOK_RETRY_SCHEDULE": "300ms,300ms,300ms",
    }


def run_server(
    request: pytest.FixtureRequest, mode: str, workdir: Path, database: str = "postgres_url"
) -> Iterator[Server]:
    """A server on the embedded default, or on PostgreSQL + RabbitMQ with a worker."""
    if mode == "embedded":
        yield from start_server(workdir, base_env(f"sqlite:///{workdir}/lightning.db"))
        return
    postgres_url: str = request.getfixturevalue(database)
    amqp_url: str = request.getfixturevalue("amqp_url")
    run = uuid.uuid4().hex[:10]
    env = base_env(postgres_url) | {
        "LIGHTNING_AMQP_URL": amqp_url,
        "LIGHTNING_EXCHANGE": f"lightning.events.e2e-{run}",
        "LIGHTNING_QUEUE_PREFIX": f"lightning-e2e-{run}",
    }
    log = (workdir / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "lightning.cli", "worker", "all"],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield from start_server(workdir, env)
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        log.close()
        asyncio.run(
            delete_topology(amqp_url, env["LIGHTNING_EXCHANGE"], env["LIGHTNING_QUEUE_PREFIX"])
        )


@pytest.fixture(params=["embedded", "distributed"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """The same journeys on the embedded default and on PostgreSQL + RabbitMQ + a worker."""
    yield from run_server(request, request.param, tmp_path)


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One server of each mode for a whole module, for tests that only read or refuse."""
    workdir = tmp_path_factory.mktemp(request.param)
    yield from run_server(request, request.param, workdir, "module_postgres_url")


async def delete_topology(amqp_url: str, exchange: str, prefix: str) -> None:
    import aio_pika

    from lightning.bus.rabbitmq import Topology

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await Topology(exchange, prefix, delivery_limit=5).delete(
            connection, ("projections", "sagas", "webhooks")
        )


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path, base_env(f"sqlite:///{tmp_path}/lightning.db"))
