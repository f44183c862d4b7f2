"""Distributed mode on the real services: PostgreSQL store, RabbitMQ fan-out, worker processes
killed mid-stream. Each test ends by checking that every read model equals a fold of the whole
event log — no event lost, none applied twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.consumers import ParkedFilter, run_to_head
from lightning.domain.errors import Conflict
from lightning.services import SYSTEM, Context

from .cluster import Cluster, assert_read_models_equal_fold_of_log, wait_caught_up

CTX = Context(SYSTEM)
GROK = {"provider": "grok", "model": "grok-code-fast-1"}


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
    wait_caught_up(app, cluster, kinds=list(app.consumers.kinds))  # `all`: sagas, webhooks too
    assert_read_models_equal_fold_of_log(app)
    # A handler's status row is written just after its batch commits, so it may trail the
    # position the wait above saw by a moment.
    wait_for(lambda: all(s.status == "running" for s in app.consumers.statuses()), timeout=30)


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


def test_relay_publishes_api_key_events_without_secret_hashes(
    cluster: Cluster, app: Lightning
) -> None:
    """DESIGN §3: a message body is the redacted envelope; the store keeps the hashes, and a
    consumer still takes the message (it reads the store's own copy)."""
    import aio_pika

    from lightning.bus.rabbitmq import to_delivery

    issued = app.api_keys.issue(CTX, name="ci", role="operator")
    rotated = app.api_keys.rotate(CTX, issued.key.id, grace_period_seconds=3600)
    stored = [app.store.get(r.position) for r in (issued, rotated)]
    hashes = {
        v for e in stored if e is not None for k, v in e.data.items() if k.endswith("secret_hash")
    }
    assert len(hashes) == 2  # the rotation's new hash and the previous one

    async def collect() -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(cluster.amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                cluster.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="api_key.*")
            relay = cluster.start_worker("relay")  # publishes the log from its start
            messages: list[aio_pika.abc.AbstractIncomingMessage] = []
            deadline = time.monotonic() + 30
            while len(messages) < 2 and time.monotonic() < deadline:
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.1)
                    continue
                await message.ack()
                messages.append(message)
            relay.terminate()
            return messages

    messages = asyncio.run(collect())
    assert [m.routing_key for m in messages] == ["api_key.issued", "api_key.rotated"]
    for message, envelope in zip(messages, stored, strict=True):
        assert envelope is not None
        assert b"secret_hash" not in message.body
        assert not [h for h in hashes if h.encode() in message.body or h in str(message.headers)]
        assert json.loads(message.body) == envelope.public()
        assert to_delivery(message).position == envelope.position


@pytest.mark.parametrize("killed", ["projections", "all"])
def test_worker_killed_mid_stream_and_restarted(
    cluster: Cluster, app: Lightning, killed: str
) -> None:
    if killed == "projections":
        cluster.start_worker("relay")
    consumer = cluster.start_worker(killed)
    # Enough commands to outlast the worker's start (``worker all`` starts every consumer kind
    # and their companions) on a loaded machine: the kill must come mid-stream.
    writer = Writer(app, commands=900)
    wait_for(lambda: app.consumers.tracking.position("audit_log") > 100)
    consumer.send_signal(signal.SIGKILL)
    assert wait_exit(consumer) == -signal.SIGKILL
    killed_at = app.consumers.tracking.position("audit_log")
    writer.wait_until(killed_at + 100)
    assert not writer.done(), "the kill must happen mid-stream"
    cluster.start_worker(killed)
    writer.finish()
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)
    assert len(app.consumers.tracking.read("SELECT id FROM agents")) == 900


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
    # At least 12.5 s of commands (500, four threads, 0.1 s apart each): stopping and starting
    # the broker's app takes seconds on a loaded machine, and the writer must outlast it.
    writer = Writer(app, commands=500, threads=4, pause=0.1)
    wait_for(lambda: app.consumers.tracking.position("audit_log") > 50)
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
    assert app.consumers.tracking.position("agents") == head
    app.agents.register(CTX, name="after", **GROK)
    wait_caught_up(app, cluster)
    assert_read_models_equal_fold_of_log(app)
    dead = asyncio.run(cluster.dead_letters())
    assert sorted(dead) == sorted([b"{not json", b'{"type": "agent.registered"}'])
    assert all(s.status == "running" for s in app.consumers.statuses())


def parked_keys(app: Lightning) -> list[tuple[str, str]]:
    return [(p.handler, p.key) for p in app.consumers.parked(ParkedFilter())]


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightning.cli", *args],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_poison_event_parks_its_aggregate_through_a_kill_and_is_healed(
    cluster: Cluster, app: Lightning
) -> None:
    """The failpoint makes the agents projection fail on one aggregate in the worker: that
    aggregate's events are parked in order, everything else flows, a SIGKILL changes nothing,
    and retry-parked (from a process without the failpoint: the fix) heals it."""
    target = app.agents.register(CTX, name="target", **GROK).agent.id
    failpoint = {"LIGHTNING_FAILPOINTS": f"apply:agents:{target}"}
    worker = cluster.start_worker("all", **failpoint)
    writer = Writer(app, commands=150, threads=4, pause=0.02)
    app.agents.reconfigure(CTX, target, temperature=1.1)
    wait_for(lambda: parked_keys(app) == [("agents", str(target))] * 2)
    worker.send_signal(signal.SIGKILL)
    assert wait_exit(worker) == -signal.SIGKILL
    app.agents.reconfigure(CTX, target, temperature=1.2)  # while no worker runs
    cluster.start_worker("projections", **failpoint)
    writer.finish()
    app.agents.reconfigure(CTX, target, temperature=1.3)
    head = wait_caught_up(app, cluster)

    target_positions = [e.position for e in app.store.load(target)]
    parked = app.consumers.parked(ParkedFilter())
    assert [(p.handler, p.key, p.position) for p in parked] == [
        ("agents", str(target), position) for position in target_positions
    ]
    assert "failpoint" in (parked[0].error or "")
    agents = {r["id"] for r in app.consumers.tracking.read("SELECT id FROM agents")}
    assert len(agents) == 150 and str(target) not in agents
    assert app.consumers.tracking.position("audit_log") == head
    status = {s.name: s.status for s in app.consumers.statuses("projections")}
    assert status == {
        "agents": "degraded",
        "api_keys": "running",
        "audit_log": "running",
        "workflows": "running",
    }

    listed = cli(cluster, "consumers", "parked", "--json")
    assert [json.loads(line)["position"] for line in listed.stdout.splitlines()] == target_positions
    dry = cli(cluster, "consumers", "retry-parked", "--aggregate", str(target), "--dry-run")
    assert dry.returncode == 0 and "would apply 4 event(s)" in dry.stdout, dry
    assert len(parked_keys(app)) == 4
    healed = cli(cluster, "consumers", "retry-parked", "--aggregate", str(target))
    assert healed.returncode == 0 and "applied 4 event(s)" in healed.stdout, healed
    assert parked_keys(app) == []
    assert_read_models_equal_fold_of_log(app)


def test_the_nul_event_of_the_old_code_parks_one_aggregate_and_nothing_else(
    cluster: Cluster, app: Lightning
) -> None:
    from .test_log_fixture import LOGS, load_log, nul_events

    load_log(app, LOGS[0])
    cluster.start_worker("all")
    head = wait_caught_up(app, cluster)
    odd = nul_events(app)[0].aggregate_id
    assert set(parked_keys(app)) == {("agents", str(odd))}
    assert app.consumers.tracking.position("agents") == head
    stored = {r["id"] for r in app.consumers.tracking.read("SELECT id FROM agents")}
    expected = {e.aggregate_id for e in app.store.iterate(0) if e.aggregate_type == "agent"}
    assert stored == {str(a) for a in expected - {odd}}


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
        run_to_head(app.consumers.build("projections"))
        assert_read_models_equal_fold_of_log(app)
    finally:
        app.close()


def accepting(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def test_postgres_restart_with_full_pools(cluster: Cluster, app: Lightning) -> None:
    """Every pooled connection dies with the server: the command path and the workers must
    come back at once when it is back, not after a dead connection per try and a long backoff
    (they used to take 3-17 s; scripts/pg_restart_trial.py measures it with `serve` too)."""
    import os

    cluster.start_worker("all")
    size = app.settings.postgres_pool_size
    with ThreadPoolExecutor(3 * size) as pool:  # more callers than connections: pools full
        list(
            pool.map(lambda i: app.agents.register(CTX, name=f"warm-{i}", **GROK), range(3 * size))
        )
    wait_caught_up(app, cluster)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    restart = subprocess.Popen(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    )
    try:
        wait_for(lambda: not accepting(cluster.database_url), timeout=30)
        wait_for(lambda: accepting(cluster.database_url), timeout=60)
        back = time.monotonic()
        position = 0
        while not position:
            with contextlib.suppress(Exception):
                position = app.agents.register(CTX, name="after-restart", **GROK).position
        served = time.monotonic() - back
        wait_caught_up(app, cluster, timeout=30)
        current = time.monotonic() - back
    finally:
        restart.wait(timeout=120)
    assert served < 2 and current < 2, f"command after {served:.2f}s, read models {current:.2f}s"
    assert_read_models_equal_fold_of_log(app)


def test_an_event_no_version_can_read_neither_stops_the_relay_nor_the_consumers(
    cluster: Cluster, app: Lightning
) -> None:
    from eventsourcing.persistence import StoredEvent

    cluster.start_worker("all")
    broken = app.agents.register(CTX, name="broken", **GROK).agent.id
    [position] = app.store.backend.recorder.insert_events(
        [StoredEvent(broken, 2, "agent.reconfigured", b'["not", "an envelope"]')]
    ) or [0]
    later = app.agents.register(CTX, name="later", **GROK)
    head = wait_caught_up(app, cluster)
    assert head == later.position
    # Parked by the read models that read that type, and by the webhook dispatcher (every event
    # may match a subscription): nothing else stops.
    assert set(parked_keys(app)) == {
        ("agents", str(broken)),
        ("audit_log", str(broken)),
        ("webhooks", str(broken)),
    }
    assert [p.position for p in app.consumers.parked(ParkedFilter())] == [position] * 3
    assert "relay interrupted" not in cluster.logs()  # it published a stand-in and went on
