"""Distributed mode on the real services: PostgreSQL store, RabbitMQ fan-out, worker processes
killed mid-stream. Each test ends by checking that every read model equals a fold of the whole
event log — no event lost, none applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.domain.errors import Conflict
from lightning.services import SYSTEM, Context

from .cluster import Cluster, assert_read_models_equal_fold_of_log, wait_caught_up

CTX = Context(SYSTEM)
GROK = {"provider": "grok", "model": "grok-code-fast-1"}


@pytest.fixture
def cluster(postgres_url: str, amqp_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(postgres_url, amqp_url, tmp_path)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def app(cluster: Cluster) -> Iterator[Lightning]:
    lightning = cluster.open()
    try:
        yield lightning
    finally:
        lightning.close()


class Writer:
    """Keeps commands arriving from several threads while a test breaks things."""

    def __init__(
        self, app: Lightning, commands: int, threads: int = 8, pause: float = 0.05
    ) -> None:
        self.app = app
        self.commands = commands
        self.pause = pause
        self.pool = ThreadPoolExecutor(threads)
        self.futures = [self.pool.submit(self._command, i) for i in range(commands)]

    def _command(self, i: int) -> int:
        time.sleep(self.pause)  # a steady stream rather than one burst
        result = self.app.agents.register(CTX, name=f"agent-{i}", **GROK)
        if i % 3 == 0:
            result = self.app.agents.reconfigure(CTX, result.agent.id, temperature=1.0)
        return result.position

    def wait_until(self, position: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.app.store.max_position() < position:
            assert time.monotonic() < deadline, "commands stopped arriving"
            time.sleep(0.01)

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def finish(self) -> None:
        for future in self.futures:
            future.result(timeout=120)
        self.pool.shutdown()


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def wait_exit(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    return process.wait(timeout=timeout)


def test_same_results_as_embedded_mode(cluster: Cluster, app: Lightning) -> None:
    cluster.start_worker("all")
    agent = app.agents.register(CTX, name="coder", **GROK).agent.id
    app.agents.reconfigure(CTX, agent, model="grok-beta")
    app.api_keys.issue(CTX, name="ci", role="viewer")
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)
    assert all(s.status == "running" for s in app.projections.statuses())


def test_relay_publishes_persistent_confirmed_envelopes(cluster: Cluster, app: Lightning) -> None:
    """What an off-the-shelf AMQP client bound to the exchange receives."""
    import aio_pika

    async def collect() -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(cluster.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                cluster.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="agent.*")
            relay = cluster.start_worker("relay")
            await asyncio.to_thread(app.agents.register, CTX, name="observed", **GROK)
            message = await queue.get(timeout=30, fail=False)
            for _ in range(300):
                if message is not None:
                    break
                await asyncio.sleep(0.1)
                message = await queue.get(fail=False)
            relay.terminate()
            assert message is not None
            await message.ack()
            return [message]

    [message] = asyncio.run(collect())
    envelope = json.loads(message.body)
    stored = app.store.get(envelope["position"])
    assert stored is not None and json.loads(stored.to_json()) == envelope
    assert message.routing_key == "agent.registered" == envelope["type"]
    assert message.delivery_mode == 2  # persistent
    assert message.message_id == envelope["id"]
    assert message.content_type == "application/json"
    headers = message.headers or {}
    assert headers["position"] == envelope["position"]
    assert headers["previous_position"] == envelope["position"] - 1  # the reservation before it
    assert str(headers["traceparent"]).startswith("00-")


@pytest.mark.parametrize("killed", ["projections", "all"])
def test_worker_killed_mid_stream_and_restarted(
    cluster: Cluster, app: Lightning, killed: str
) -> None:
    if killed == "projections":
        cluster.start_worker("relay")
    consumer = cluster.start_worker(killed)
    writer = Writer(app, commands=300)
    wait_for(lambda: app.projections.read_store.position("audit_log") > 100)
    consumer.send_signal(signal.SIGKILL)
    assert wait_exit(consumer) == -signal.SIGKILL
    killed_at = app.projections.read_store.position("audit_log")
    writer.wait_until(killed_at + 100)
    assert not writer.done(), "the kill must happen mid-stream"
    cluster.start_worker(killed)
    writer.finish()
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)
    assert len(app.projections.read_store.read("SELECT id FROM agents")) == 300


def test_relay_killed_between_publish_and_recording_its_position(
    cluster: Cluster, app: Lightning
) -> None:
    cluster.start_worker("projections")
    for i in range(20):
        app.agents.register(CTX, name=f"early-{i}", **GROK)
    relay = cluster.start_worker("relay", LIGHTNING_FAILPOINTS="relay.after_confirm")
    assert wait_exit(relay) == -signal.SIGKILL  # died after the broker confirmed a batch
    relay_position = app.store.backend.transaction(commit=False)
    with relay_position as tx:
        recorded = tx.one("SELECT position FROM relay_position WHERE name = 'rabbitmq'")
    assert recorded is None  # it never recorded that batch: the next relay republishes it
    writer = Writer(app, commands=60)
    cluster.start_worker("relay")
    writer.finish()
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)


def test_standby_relay_takes_over_when_the_active_one_dies(
    cluster: Cluster, app: Lightning
) -> None:
    cluster.start_worker("projections")
    active = cluster.start_worker("relay")
    app.agents.register(CTX, name="first", **GROK)
    wait_caught_up(app, cluster)
    standby = cluster.start_worker("relay")
    wait_for(lambda: "standing by" in cluster.logs())
    active.send_signal(signal.SIGKILL)
    assert wait_exit(active) == -signal.SIGKILL
    app.agents.register(CTX, name="second", **GROK)
    wait_caught_up(app, cluster)
    assert standby.poll() is None
    assert_read_models_equal_fold_of_log(app)


def test_rabbitmq_restarted_mid_stream(cluster: Cluster, app: Lightning) -> None:
    cluster.start_worker("all")
    writer = Writer(app, commands=500, threads=4)
    wait_for(lambda: app.projections.read_store.position("audit_log") > 50)
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=120)
    down_at = app.store.max_position()
    time.sleep(1)
    assert app.store.max_position() > down_at  # commands kept committing without the broker
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    assert not writer.done(), "the restart must happen mid-stream"
    writer.finish()  # commands never needed the broker: the store is the source of truth
    wait_caught_up(app, cluster, timeout=120)
    assert_read_models_equal_fold_of_log(app)


def test_malformed_message_is_dead_lettered_and_position_kept(
    cluster: Cluster, app: Lightning
) -> None:
    cluster.start_worker("all")
    app.agents.register(CTX, name="before", **GROK)
    head = wait_caught_up(app, cluster)
    asyncio.run(
        cluster.publish_raw(b"{not json", "agent.registered", {"previous_position": 10_000})
    )
    asyncio.run(cluster.publish_raw(b'{"type": "agent.registered"}', "agent.registered"))
    time.sleep(1)
    assert app.projections.read_store.position("agents") == head
    app.agents.register(CTX, name="after", **GROK)
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)
    dead = asyncio.run(cluster.dead_letters())
    assert sorted(dead) == sorted([b"{not json", b'{"type": "agent.registered"}'])
    assert all(s.status == "running" for s in app.projections.statuses())


def test_poison_event_stalls_the_consumer_instead_of_skipping(
    cluster: Cluster, app: Lightning
) -> None:
    from lightning.store.envelope import Envelope

    cluster.start_worker("all")
    good = app.agents.register(CTX, name="good", **GROK)
    wait_caught_up(app, cluster)
    # An event written by some other, buggy code: the agents projection cannot apply it.
    poison = Envelope.model_validate(
        json.loads(app.store.load(good.agent.id)[0].to_json())
        | {"id": "00000000-0000-0000-0000-0000000000aa", "version": 2, "position": 0, "data": {}}
    )
    [stored_poison] = app.store.append([poison])
    poison_position = stored_poison.position
    deadline = time.monotonic() + 60
    while True:
        status = {s.name: s for s in app.projections.statuses()}
        if status["agents"].status == "stalled":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["agents"].lag >= 1 and status["agents"].error
    # The others carry on, including with events after the poison one.
    after = app.agents.register(CTX, name="after-poison", **GROK)
    wait_for(lambda: app.projections.read_store.position("audit_log") >= after.position)
    assert app.projections.read_store.position("api_keys") >= after.position
    # It is retried from the store with every batch, never skipped: it stays put, and says so.
    time.sleep(1)
    assert app.projections.read_store.position("agents") < poison_position
    assert {s.name: s.status for s in app.projections.statuses()}["agents"] == "stalled"
    health = app.projections.statuses()
    assert any(s.status == "stalled" for s in health)


def _writer_process(database_url: str, shared: str, index: int, count: int) -> list[int]:
    from lightning.config import Settings

    app = Lightning.open(Settings(database_url=database_url, amqp_url=None))
    versions = []
    try:
        for i in range(count):
            app.agents.register(CTX, name=f"p{index}-{i}", **GROK)
            versions.append(
                app.agents.reconfigure(
                    CTX, UUID(shared), temperature=round(0.01 * (index * count + i + 1), 2)
                ).agent.config_version
            )
        with contextlib.suppress(Conflict):
            app.agents.register(CTX, name="contested", **GROK)
    finally:
        app.close()
    return versions


def test_concurrent_writer_processes(database_url: str) -> None:
    import multiprocessing

    processes, count = 8, 10
    app = Lightning.open(
        __import__("lightning.config").config.Settings(database_url=database_url, amqp_url=None)
    )
    try:
        shared = app.agents.register(CTX, name="shared", **GROK).agent.id
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            results = pool.starmap(
                _writer_process, [(database_url, str(shared), i, count) for i in range(processes)]
            )
        versions = sorted(v for r in results for v in r)
        assert versions == list(range(2, 2 + processes * count))  # every reconfigure applied once
        stream = app.store.load(shared)
        assert [e.version for e in stream] == list(range(1, 2 + processes * count))
        contested = [
            e
            for e in app.store.iterate(0)
            if e.type == "agent.registered" and e.data["name"] == "contested"
        ]
        assert len(contested) == 1
        for name in app.projections.names():
            from lightning.bus.consumer import TrackedConsumer

            TrackedConsumer(app.projections.handler(name), app.store).catch_up()
        assert_read_models_equal_fold_of_log(app)
    finally:
        app.close()
