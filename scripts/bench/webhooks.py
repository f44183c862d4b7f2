"""Lightning's webhook dispatcher against a plain httpx loop, on this machine (medians of --runs).

1. Throughput: --events deliveries recorded while the subscription is paused (all consumers
   caught up), timed from ``resume`` until all are SUCCEEDED; the ceiling is an httpx.AsyncClient
   (set up as the sender's) POSTing the same bodies and headers, --concurrency posters and one.
2. Idle latency: --commands commands --interval s apart; receiver arrival (by ``data.position``)
   minus the command's return, both ``time.time()``.
3. Isolation: 2 beside a dead endpoint (backlog 0, never accepts, queue pre-filled: SYNs are
   dropped, every attempt a connect timeout), webhook_timeout 2 s; target: healthy p99 within
   50 ms of 2's. Breaker: the dead one with webhook_disable_after --disable-after, commands until
   ``webhook.disabled``. The receiver is this script with --receiver, in its own process.
Each run has a fresh database (SQLite in a temporary directory, or PostgreSQL
``lightning_bench_<random>``, migrated, dropped even on failure) and the in-process bus.
Besides the report it writes docs/bench/webhooks.json and webhooks.png (``--out``) for the
README's table (``scripts/bench/run.py``): deliveries/s against the sequential loop, the idle
p99 (target <= 50 ms) and the dead endpoint's cost to the healthy one's p99 (target <= +50 ms).

    .venv/bin/python scripts/bench/webhooks.py [--backend sqlite|postgres] [--runs 3] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import psycopg
from common import RESULTS, Row, machine, write
from psycopg import sql

from lightning.bootstrap import Lightning
from lightning.config import Settings
from lightning.services import SYSTEM, Context
from lightning.store.backends import open_backend
from lightning.store.envelope import format_time
from lightning.store.migrations import Migrator
from lightning.store.secrets import Keyring
from lightning.webhooks import signing

TARGET_DELTA_MS = 50.0
TARGET_IDLE_P99_MS = 50.0
CTX = Context(SYSTEM)
TYPES = ["agent.registered"]
Result = dict[str, Any]
Scenario = Callable[[argparse.Namespace, "Receiver", int], Result]


async def receive() -> None:
    """POST: 200 at once, the arrival kept. GET /count, /arrivals, /reset: about the arrivals."""
    arrivals: list[tuple[float, str, bytes]] = []

    def answer(path: bytes) -> object:
        if path == b"/reset":
            arrivals.clear()
        if path == b"/arrivals":
            return [[t, p, json.loads(b)["data"]["position"]] for t, p, b in arrivals]
        return {p: sum(1 for _, q, _ in arrivals if q == p) for p in {a[1] for a in arrivals}}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now, lines = time.time(), head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                reply = b"" if method == b"POST" else json.dumps(answer(path)).encode()
                if method == b"POST":
                    arrivals.append((now, path.decode(), body))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(reply) + reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


class Receiver:
    def __init__(self) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--receiver"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.base = f"http://127.0.0.1:{int(self.process.stdout.readline())}"
        self.client = httpx.Client(base_url=self.base, trust_env=False, timeout=30)

    def count(self, path: str) -> int:
        return int(self.client.get("/count").json().get(path, 0))

    def reset(self) -> None:
        self.client.get("/reset").raise_for_status()

    def arrivals(self, path: str) -> dict[int, float]:
        """When each position first arrived on ``path`` (delivery is at least once)."""
        first: dict[int, float] = {}
        for at, where, position in self.client.get("/arrivals").json():
            if where == path:
                first.setdefault(position, at)
        return first

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=10)


class DeadEndpoint:
    """Listens with backlog 0 and never accepts; its accept queue full, new SYNs are dropped."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.fillers = [self._connect(0) for _ in range(4)]
        time.sleep(0.1)
        try:
            self._connect(0.5).close()
            self.kind = "connections accepted by the kernel, never answered"
        except TimeoutError:
            self.kind = "SYNs dropped (connect timeouts)"

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(timeout)
        with contextlib.suppress(BlockingIOError):
            sock.connect(self.listener.getsockname())
        return sock

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="lightning-bench-") as workdir:
            yield f"sqlite:///{workdir}/bench.db"
        return
    dbname = f"lightning_bench_{secrets.token_hex(6)}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        url = urlsplit(args.postgres)._replace(path="/" + dbname).geturl()
        backend = open_backend(url)
        try:
            Migrator(backend).migrate()
        finally:
            backend.close()
        yield url
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(dbname)))


@contextlib.contextmanager
def lightning(args: argparse.Namespace, dead: bool = False, **more: Any) -> Iterator[Lightning]:
    """A fresh database and an app on it, every consumer kind and the sender running."""
    if dead:
        more |= {"webhook_timeout": 2.0, "webhook_retry_schedule": args.retry_schedule}
    with database(args) as url:
        settings = Settings(
            database_url=url,
            amqp_url=None,
            encryption_key=args.key,
            webhook_allow_private=True,
            webhook_concurrency=args.concurrency,
            **more,
        )
        app = Lightning.open(settings)
        try:
            app.start_embedded_workers()
            yield app
        finally:
            app.close()


def subscribe(app: Lightning, url: str) -> str:
    return str(app.webhooks.subscribe(CTX, url=url, event_types=TYPES).subscription.id)


def register(app: Lightning, i: int) -> tuple[float, int]:
    result = app.agents.register(CTX, name=f"bench-{i}", provider="grok", model="grok-code-fast-1")
    return time.time(), result.position


def register_many(app: Lightning, first: int, n: int) -> None:
    """``n`` commands from 8 threads, then until every consumer has applied them."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: register(app, i), range(first, first + n)))
    names = app.consumers.handler_names()

    def caught_up() -> bool:
        positions = app.consumers.tracking.read_positions(names)
        return min(positions.get(n, 0) for n in names) >= app.store.max_position()

    wait_until(caught_up, 600, "the consumers")


def count(app: Lightning, query: str, params: Sequence[object] = ()) -> int:
    return int(app.store.backend.query(query, params)[0]["n"])


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def bodies_of(app: Lightning) -> list[tuple[str, bytes]]:
    """The (webhook-id, body) of every recorded delivery, as the sender makes them."""
    rows = app.store.backend.query("SELECT id, position FROM webhook_deliveries ORDER BY position")
    found = {e.position: e for e in app.store.read_at([int(r["position"]) for r in rows])}
    return [
        ("msg_" + UUID(r["id"]).hex, signing.body(e.type, format_time(e.occurred_at), e.public()))
        for r in rows
        if (e := found[int(r["position"])])
    ]


async def post_all(url: str, bodies: list[tuple[str, bytes]], secret: str, posters: int) -> float:
    """The ceiling: POSTs/s of ``posters`` loops sharing one client set up as the sender's."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=15.0, limits=limits, trust_env=False) as client:
        work = iter(bodies)

        async def poster() -> None:
            for message_id, body in work:
                headers = signing.headers(message_id, int(time.time()), [secret], body)
                (await client.post(url, content=body, headers=headers)).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(posters)))
        return len(bodies) / (time.perf_counter() - started)


def throughput_run(args: argparse.Namespace, receiver: Receiver, run: int) -> Result:
    n, spy = args.events, None
    with lightning(args) as app:
        subscribed = app.webhooks.subscribe(CTX, url=receiver.base + "/t", event_types=TYPES)
        app.webhooks.pause(CTX, subscribed.subscription.id)
        register_many(app, 0, n)
        if args.py_spy and run == 0:  # py-spy, not pausing this process, until SIGINT
            fmt = "flamegraph" if args.py_spy.endswith(".svg") else "raw"
            command = ["record", "--nonblocking", "-f", fmt, "-o", args.py_spy, "--pid"]
            spy = subprocess.Popen([args.py_spy_bin, *command, str(os.getpid())])
            time.sleep(1.0)
        started, cpu = time.perf_counter(), time.process_time()
        app.webhooks.resume(CTX, subscribed.subscription.id)
        done = "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'SUCCEEDED'"
        wait_until(lambda: count(app, done) >= n, 900, "delivering", every=0.02)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        bodies = bodies_of(app)
        attempts = count(app, "SELECT COUNT(*) AS n FROM webhook_attempts")
    assert subscribed.secret is not None and len(bodies) == n
    receiver.reset()
    concurrent = asyncio.run(
        post_all(receiver.base + "/b", bodies, subscribed.secret, args.concurrency)
    )
    sequential = asyncio.run(post_all(receiver.base + "/b", bodies, subscribed.secret, 1))
    if receiver.count("/b") != 2 * n:
        raise RuntimeError(f"the receiver counted {receiver.count('/b')} on /b, not {2 * n}")
    result = {
        "lightning_per_s": n / seconds,
        "lightning_cpu_cores": cpu / seconds,
        "baseline_concurrent_per_s": concurrent,
        "baseline_sequential_per_s": sequential,
        "attempts": attempts,
    }
    print(f"throughput run {run + 1}: {result}", file=sys.stderr, flush=True)
    return result


def latency_run(args: argparse.Namespace, receiver: Receiver, run: int, dead: bool) -> Result:
    """Scenario 2, or 3 (``dead``): the healthy endpoint's latency, beside a dead one."""
    endpoint, path = DeadEndpoint(), "/dead" if dead else "/idle"
    try:
        with lightning(args, dead=dead) as app:
            dead_id = subscribe(app, endpoint.url) if dead else ""
            if dead and args.dead_backlog:
                register_many(app, 20_000_000, args.dead_backlog)
            subscribe(app, receiver.base + path)
            receiver.reset()
            for i in range(5):  # warm-up
                register(app, 10_000_000 + i)
            wait_until(lambda: receiver.count(path) >= 5, 60, "warm-up", 0.05)
            receiver.reset()
            returned: dict[int, float] = {}
            start = time.perf_counter()
            for i in range(args.commands):
                time.sleep(max(0.0, start + i * args.interval - time.perf_counter()))
                at, position = register(app, i)
                returned[position] = at
            arrived: dict[int, float] = {}

            def all_arrived() -> bool:
                arrived.update(receiver.arrivals(path))
                return returned.keys() <= arrived.keys()

            wait_until(all_arrived, 60, "arrivals", 0.1)
            ms = [(arrived[p] - at) * 1000 for p, at in returned.items()]
            q = statistics.quantiles(ms, n=100, method="inclusive")
            result: Result = {"p50_ms": q[49], "p99_ms": q[98], "max_ms": max(ms)}
            result["duplicates"] = receiver.count(path) - len(receiver.arrivals(path))
            if dead:
                rows = app.store.backend.query(
                    "SELECT e.status, COUNT(a.attempt) AS n FROM webhook_endpoints e"
                    " LEFT JOIN webhook_deliveries d ON d.subscription_id = e.id LEFT JOIN"
                    " webhook_attempts a ON a.delivery_id = d.id WHERE e.id = ? GROUP BY e.status",
                    (dead_id,),
                )
                result |= {"dead_status": rows[0]["status"], "dead_attempts": int(rows[0]["n"])}
                result["dead_endpoint"] = endpoint.kind
    finally:
        endpoint.close()
    print(f"latency run {run + 1}{' (dead)' * dead}: {result}", file=sys.stderr, flush=True)
    return result


def breaker_run(args: argparse.Namespace, receiver: Receiver, run: int) -> Result:
    """The dead endpoint, webhook_disable_after short: commands until it is disabled."""
    endpoint, rows = DeadEndpoint(), []
    query = "SELECT status, failing_since FROM webhook_endpoints WHERE id = ?"
    try:
        with lightning(args, dead=True, webhook_disable_after=args.disable_after) as app:
            dead_id = subscribe(app, endpoint.url)
            first, _ = register(app, 0)
            deadline = time.monotonic() + args.disable_after + 60
            for i in range(1, 1_000_000):
                rows = app.store.backend.query(query, (dead_id,))
                if rows and rows[0]["status"] == "disabled":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the dead endpoint was not disabled")
                time.sleep(args.interval)
                register(app, i)
            event = next(e for e in app.store.iterate() if e.type == "webhook.disabled")
    finally:
        endpoint.close()
    at = event.occurred_at.timestamp()
    since = datetime.fromisoformat(rows[0]["failing_since"].replace("Z", "+00:00")).timestamp()
    result = {
        "after_first_s": at - first,
        "after_failing_s": at - since,
        "reason": event.data.get("reason"),
    }
    print(f"breaker run {run + 1}: {result}", file=sys.stderr, flush=True)
    return result


def report(args: argparse.Namespace, machine: dict[str, str], got: Result) -> list[str]:
    t, idle, iso, cb = (got[k] for k in ("throughput", "idle", "isolation", "breaker"))
    delta, last = iso["p99_ms"] - idle["p99_ms"], got["runs"]["isolation"][-1]
    ceiling, sequential = t["baseline_concurrent_per_s"], t["baseline_sequential_per_s"]
    lines = [
        f"webhooks benchmark on {machine['database']}, medians of {args.runs} run(s);"
        f" {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, httpx"
        f" {machine['httpx']}; commit {machine['commit']}; load average at start"
        f" {machine['load_at_start']}",
        f"1. throughput, {args.events} deliveries to one loopback receiver (own process),"
        f" webhook_concurrency {args.concurrency}",
        f"   {'sender':<40} {'per s':>7} {'/ ' + str(args.concurrency) + ' posters':>12}"
        f" {'/ sequential':>12}",
    ]
    for label, rate in (
        ("Lightning dispatcher", t["lightning_per_s"]),
        (f"httpx.AsyncClient, {args.concurrency} concurrent posters", ceiling),
        ("httpx.AsyncClient, sequential", sequential),
    ):
        lines.append(
            f"   {label:<40} {rate:>7.0f} {rate / ceiling:>11.2f}x {rate / sequential:>11.2f}x"
        )
    lines += [
        f"   (Lightning: {t['attempts']:.0f} attempts; this process used"
        f" {t['lightning_cpu_cores']:.2f} cores while it drained)",
        f"2./3. append -> webhook latency, {args.commands} commands {args.interval * 1000:.0f} ms"
        f" apart\n   {'healthy endpoint':<40} {'p50 ms':>7} {'p99 ms':>10} {'max ms':>12}",
    ]
    for label, r in (("alone", idle), ("beside a dead endpoint", iso)):
        lines.append(
            f"   {label:<40} {r['p50_ms']:>7.1f} {r['p99_ms']:>10.1f} {r['max_ms']:>12.1f}"
        )
    met = "MET" if delta <= TARGET_DELTA_MS else "NOT MET"
    return [
        *lines,
        f"   p99 beside it - p99 alone: {delta:+.1f} ms (target <= +{TARGET_DELTA_MS:.0f} ms)"
        f" -> {met}\n   dead endpoint: {last['dead_endpoint']}; backlog {args.dead_backlog}"
        f" events before; {iso['dead_attempts']:.0f} attempts; still {last['dead_status']}",
        f"   duplicate webhooks at the healthy endpoint (max of runs): alone"
        f" {max(r['duplicates'] for r in got['runs']['idle'])}, beside it"
        f" {max(r['duplicates'] for r in got['runs']['isolation'])}",
        f"3. circuit breaker (webhook_disable_after {args.disable_after:g} s, timeout 2 s,"
        f" retries {args.retry_schedule}): webhook.disabled {cb['after_failing_s']:.2f} s"
        f" after failing_since, {cb['after_first_s']:.2f} s after the first append",
        f"   reason: {got['runs']['breaker'][-1]['reason']}",
    ]


def rows_of(args: argparse.Namespace, got: Result) -> list[Row]:
    """The figures of the README's table: ours against the baseline, or against a target."""
    runs, t, idle, iso = got["runs"], got["throughput"], got["idle"], got["isolation"]
    delta = iso["p99_ms"] - idle["p99_ms"]
    return [
        Row(
            name=f"deliveries, draining {args.events} to one subscription",
            unit="deliveries/s",
            ours=t["lightning_per_s"],
            baseline=t["baseline_sequential_per_s"],
            baseline_name="httpx.AsyncClient, sequential loop (same bodies, same receiver)",
            runs=[r["lightning_per_s"] for r in runs["throughput"]],
            baseline_runs=[r["baseline_sequential_per_s"] for r in runs["throughput"]],
        ),
        Row(
            name="append -> webhook latency p99, idle",
            unit="ms",
            ours=idle["p99_ms"],
            higher_is_better=False,
            target=f"<= {TARGET_IDLE_P99_MS:.0f} ms",
            met=idle["p99_ms"] <= TARGET_IDLE_P99_MS,
            runs=[r["p99_ms"] for r in runs["idle"]],
        ),
        Row(
            name="p99 beside a dead endpoint - p99 alone",
            unit="ms",
            ours=delta,
            higher_is_better=False,
            target=f"<= +{TARGET_DELTA_MS:.0f} ms",
            met=delta <= TARGET_DELTA_MS,
            runs=[
                d["p99_ms"] - i["p99_ms"]
                for d, i in zip(runs["isolation"], runs["idle"], strict=True)
            ],
        ),
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Lightning's webhook dispatcher: throughput vs a plain httpx loop, latency"
        " at idle, isolation from a dead endpoint, circuit breaker.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--backend", choices=("sqlite", "postgres"), default="sqlite")
    add("--runs", type=int, default=3, help="repetitions; medians are reported")
    add("--events", type=int, default=2000, help="deliveries in scenario 1")
    add("--commands", type=int, default=200, help="commands in scenarios 2 and 3")
    add("--interval", type=float, default=0.05, help="seconds between those commands")
    add("--concurrency", type=int, default=4, help="webhook_concurrency (and baseline posters)")
    add("--retry-schedule", default="100ms,100ms,100ms", help="with the dead endpoint")
    add("--disable-after", type=float, default=3.0, help="breaker: webhook_disable_after")
    add("--dead-backlog", type=int, default=0, help="events for the dead endpoint beforehand")
    add("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    add("--json", help="write the results to this file")
    add("--out", type=Path, default=RESULTS, help="where webhooks.json and webhooks.png go")
    add("--py-spy", help="py-spy record the first drain of 1 into this file (.svg, else raw)")
    add("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.runs, args.events, args.commands, args.concurrency) < 1:
        parser.error("--runs, --events, --commands and --concurrency must be positive")
    args.py_spy_bin = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        asyncio.run(receive())
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: databases dropped
    args.key, started = Keyring.generate("bench"), time.perf_counter()
    database = f"SQLite {sqlite3.sqlite_version}"
    if args.backend == "postgres":
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            database = f"PostgreSQL {conn.info.parameter_status('server_version')}"
    described = machine(database=database, httpx=httpx.__version__)
    scenarios: dict[str, Scenario] = {
        "throughput": throughput_run,
        "idle": partial(latency_run, dead=False),
        "isolation": partial(latency_run, dead=True),
        "breaker": breaker_run,
    }
    runs: dict[str, list[Result]] = {name: [] for name in scenarios}
    receiver = Receiver()
    try:
        for name, scenario in scenarios.items():
            for run in range(args.runs):
                runs[name].append(scenario(args, receiver, run))
    finally:
        receiver.close()
    got: Result = {"runs": runs}
    for name, results in runs.items():
        numbers = [k for k, v in results[0].items() if isinstance(v, int | float)]
        got[name] = {k: statistics.median(float(r[k]) for r in results) for k in numbers}
    print("\n".join(report(args, described, got)))
    print(f"total runtime: {time.perf_counter() - started:.0f} s")
    options = {k: v for k, v in vars(args).items() if k not in ("key", "receiver")}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": described, "options": options, **got}, f, indent=2, default=str)
    write("webhooks", rows_of(args, got), described, args.runs, options, got, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
