"""A distributed Lightning for tests: PostgreSQL, RabbitMQ (uniquely named exchange and queues,
deleted afterwards) and real ``lightning worker`` processes that tests can kill."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from lightning.bootstrap import Lightning
from lightning.bus.rabbitmq import Topology
from lightning.config import Settings
from lightning.replay import replay


@dataclass
class Cluster:
    database_url: str
    amqp_url: str
    workdir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[Any] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"lightning.events.test-{self.run_id}"

    @property
    def queue_prefix(self) -> str:
        return f"lightning-test-{self.run_id}"

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")}
        return (
            base
            | {
                "LIGHTNING_DATABASE_URL": self.database_url,
                "LIGHTNING_AMQP_URL": self.amqp_url,
                "LIGHTNING_EXCHANGE": self.exchange,
                "LIGHTNING_QUEUE_PREFIX": self.queue_prefix,
                "LIGHTNING_DELIVERY_LIMIT": "3",
                "LIGHTNING_CONSUMER_RETRY_DELAY": "0.01",
                "LIGHTNING_ENCRYPTION_KEY": os.environ["LIGHTNING_ENCRYPTION_KEY"],
            }
            | extra
        )

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            amqp_url=self.amqp_url,
            exchange=self.exchange,
            queue_prefix=self.queue_prefix,
            delivery_limit=3,
        )

    def open(self) -> Lightning:
        return Lightning.open(self.settings())

    def start_worker(self, *kinds: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"worker-{'-'.join(kinds)}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "lightning.cli", "worker", *kinds],
            env=self.env(**extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self.log_files.append(log)
        return process

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("worker-*.log")))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.log_files:
            log.close()
        asyncio.run(self._delete_topology())

    async def _delete_topology(self) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            await Topology.from_settings(self.settings()).delete(
                connection, ("projections", "sagas", "webhooks")
            )

    async def dead_letters(self) -> list[bytes]:
        """Take every message out of the projection builders' dead-letter queue."""
        connection = await aio_pika.connect(self.amqp_url)
        bodies: list[bytes] = []
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(f"{self.queue_prefix}.projections.dead")
            while True:
                message = await queue.get(fail=False, no_ack=True)
                if message is None:
                    return bodies
                bodies.append(message.body)

    async def publish_raw(
        self, body: bytes, routing_key: str, headers: dict[str, Any] | None = None
    ) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await exchange.publish(
                aio_pika.Message(body, headers=headers or {}), routing_key=routing_key
            )


def wait_caught_up(
    app: Lightning,
    cluster: Cluster | None = None,
    timeout: float = 60,
    kinds: Sequence[str] = ("projections",),
) -> int:
    """Wait until every handler of ``kinds`` (the read models) has applied the store's head;
    return it."""
    deadline = time.monotonic() + timeout
    names = [n for kind in kinds for n in app.consumers.handler_names(kind)]
    while True:
        head = app.store.max_position()
        positions = {n: app.consumers.tracking.position(n) for n in names}
        if all(p >= head for p in positions.values()):
            return head
        if time.monotonic() > deadline:
            logs = cluster.logs()[-5000:] if cluster else ""
            raise AssertionError(f"projections at {positions}, store at {head}\n{logs}")
        time.sleep(0.1)


def assert_read_models_equal_fold_of_log(app: Lightning) -> None:
    """No event lost, none applied twice: every read model equals a fold of the whole log."""
    log = list(app.store.iterate(0))
    positions = [e.position for e in log]
    assert positions == sorted(set(positions)), "positions must be unique and increasing"
    audit = app.consumers.tracking.read(
        "SELECT position, event_id FROM audit_log ORDER BY position"
    )
    assert [r["position"] for r in audit] == positions
    assert [r["event_id"] for r in audit] == [str(e.id) for e in log]
    agents = {r["id"]: r for r in app.consumers.tracking.read("SELECT * FROM agents")}
    agent_ids = {e.aggregate_id for e in log if e.aggregate_type == "agent"}
    assert set(agents) == {str(a) for a in agent_ids}
    for agent_id in agent_ids:
        state = replay(app, agent_id)
        row = agents[str(agent_id)]
        assert row["version"] == state.version
        assert row["config_version"] == state.state["config_version"]
        assert row["status"] == state.state["status"]
        assert row["name"] == state.state["config"]["name"]
    keys = app.consumers.tracking.read("SELECT id, version FROM api_keys")
    key_versions = {}
    for e in log:
        if e.aggregate_type == "api_key":
            key_versions[str(e.aggregate_id)] = e.version
    assert {r["id"]: r["version"] for r in keys} == key_versions


def names(prefix: str, count: int) -> Sequence[str]:
    return [f"{prefix}-{i}" for i in range(count)]


@pytest.fixture
def cluster(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A distributed Lightning for one test, stopped and its topology deleted afterwards."""
    c = Cluster(postgres_url, amqp_url, tmp_path)
    try:
        yield c
    finally:
        c.stop()
