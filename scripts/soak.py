"""Subscription memory soak (issue 11): the server's RSS must stay flat while subscriptions
deliver many messages.

It opens ``--subscribers`` (10) graphql-transport-ws connections to ``/graphql``, each with one
subscription ``events(types: ["agent.*"])``, and registers agents over HTTP (``--batch``, 10,
``registerAgent`` per request; ``--writers`` requests in flight) until ``--messages`` (100,000)
messages in total have been delivered to them (10,000 agent events for 10 subscribers). The
writers never run more than ``--window`` events ahead of the slowest subscriber, so no
subscriber falls behind far enough to be disconnected: this measures memory, not slow clients.

The server process's RSS (``VmRSS`` of /proc/<pid>/status) is sampled once ``--warmup``
(10,000) messages have been delivered, then every ``--sample-every`` (10,000) messages, when the
last message has arrived and again after ``--settle`` idle seconds. It prints the series, the
growth from the warm-up sample to the idle one, and PASS/FAIL against ``--limit-mib`` (20). Only
then is the store read back for the order check (a large read has a footprint of its own, shown
as a last sample outside the verdict): every subscriber must have received every agent event the
store holds from its first message on, in order, each once; a subscriber that saw anything else
(an ``error``, a ``complete``, a closed socket) fails the run. Exit status 1 on any failure.

    .venv/bin/python scripts/soak.py                   # embedded server (SQLite, in-process bus)
    .venv/bin/python scripts/soak.py --distributed     # PostgreSQL + RabbitMQ, worker all + serve
    .venv/bin/python scripts/soak.py --url http://127.0.0.1:8000 --token ADMIN --pid 12345

Without ``--url`` it runs the server itself on a free port (in a temporary directory, or on a
fresh database with its own RabbitMQ names) and removes everything afterwards (``--keep-logs``
keeps the logs); the error lines of its logs are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import stack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

QUERY = 'subscription { events(types: ["agent.*"]) { id type position aggregateId data } }'
GROK = 'provider: "grok", model: "grok-code-fast-1"'


# ---- subscribers --------------------------------------------------------------------------------


@dataclass
class Subscriber:
    number: int
    progress: asyncio.Event  # shared: set on every message and when the socket ends
    positions: list[int] = field(default_factory=list)
    foreign: int = 0  # messages whose type is not agent.*
    problems: list[str] = field(default_factory=list)
    socket: ClientConnection | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False  # we closed it

    async def run(self, url: str, token: str) -> None:
        try:
            async with connect(
                url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10
            ) as socket:
                self.socket = socket
                await self._subscribe(socket, token)
                async for raw in socket:
                    await self._receive(socket, json.loads(raw))
        except ConnectionClosed as exc:
            if not self.finished:
                self.problems.append(f"socket closed: code {exc.code} {exc.reason!r}")
        except (OSError, TimeoutError, ValueError) as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
        if not self.finished and not self.problems:
            self.problems.append("socket closed by the server")
        self.progress.set()

    async def _subscribe(self, socket: ClientConnection, token: str) -> None:
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if ack.get("type") != "connection_ack":
            raise ValueError(f"expected connection_ack, got {ack}")
        subscribe = {"id": "1", "type": "subscribe", "payload": {"query": QUERY}}
        await socket.send(json.dumps(subscribe))
        self.subscribed.set()

    async def _receive(self, socket: ClientConnection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "next":
            payload = message.get("payload") or {}
            event = (payload.get("data") or {}).get("events")
            if payload.get("errors") or event is None:
                self.problems.append(f"next with errors: {json.dumps(payload)[:300]}")
                return
            self.positions.append(event["position"])
            self.progress.set()
            if not str(event["type"]).startswith("agent."):
                self.foreign += 1
        elif kind == "ping":
            await socket.send(json.dumps({"type": "pong"}))
        elif kind != "pong":
            self.problems.append(f"{kind}: {json.dumps(message)[:300]}")

    async def close(self) -> None:
        self.finished = True
        if self.socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.socket.send(json.dumps({"id": "1", "type": "complete"}))
            await self.socket.close()


def delivered(subscribers: list[Subscriber]) -> int:
    return sum(len(s.positions) for s in subscribers)


def dead(subscribers: list[Subscriber]) -> list[Subscriber]:
    return [s for s in subscribers if s.problems]


# ---- writers ------------------------------------------------------------------------------------


@dataclass
class Writers:
    http: httpx.AsyncClient
    run: str
    batch: int
    window: int
    subscribers: list[Subscriber]
    progress: asyncio.Event  # set by the subscribers on every message and when they end
    written: int = 0  # agents registered since ``start``
    last: int = 0  # the highest position a write returned
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    base: list[int] = field(default_factory=list)  # each subscriber's count when writing began

    async def register(self, names: list[str]) -> int:
        fields = " ".join(
            f'm{i}: registerAgent(input: {{name: "{n}", {GROK}}}) {{ position }}'
            for i, n in enumerate(names)
        )
        started = time.perf_counter()
        response = await self.http.post("/graphql", json={"query": f"mutation {{ {fields} }}"})
        self.latencies.append((time.perf_counter() - started) * 1000)
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return max(p["position"] for p in body["data"].values())

    def behind(self) -> int:
        """How far the slowest subscriber is behind what has been written."""
        counts = [len(s.positions) - b for s, b in zip(self.subscribers, self.base, strict=True)]
        return self.written - min(counts)

    async def write(self, agents: int) -> None:
        while self.written < agents and not dead(self.subscribers):
            while self.behind() > self.window and not dead(self.subscribers):
                self.progress.clear()
                await self.progress.wait()
            n = min(self.batch, agents - self.written)
            self.written += n  # claimed before the await so that writers share the target
            self.requests += 1
            names = [f"soak-{self.run}-{self.requests}-{i}" for i in range(n)]
            try:
                self.last = max(self.last, await self.register(names))
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                self.written -= n
                self.failures.append(f"{type(exc).__name__}: {exc}")
                if len(self.failures) >= 5:
                    raise RuntimeError(f"writes keep failing: {self.failures}") from exc


async def positions(http: httpx.AsyncClient, after: int, types: list[str] | None) -> list[int]:
    """Positions of the store's events (of these types) after ``after``, oldest first."""
    query = (
        "query($a: Int!, $t: [String!]) { events(after: $a, first: 500, types: $t) { position } }"
    )
    found: list[int] = []
    while True:
        variables = {"a": after, "t": types}
        body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
        if body.get("errors"):
            raise RuntimeError(f"events: {body['errors']}")
        page = [e["position"] for e in body["data"]["events"]]
        found += page
        if len(page) < 500:
            return found
        after = page[-1]


# ---- the soak -----------------------------------------------------------------------------------


@dataclass
class Sampler:
    pid: int
    warmup: int
    every: int
    started: float = field(default_factory=time.monotonic)
    series: list[tuple[str, int, float, int]] = field(default_factory=list)  # label, msgs, s, KiB

    def sample(self, label: str, messages: int) -> None:
        rss = stack.rss_kib(self.pid)
        self.series.append((label, messages, time.monotonic() - self.started, rss))

    async def follow(self, subscribers: list[Subscriber]) -> None:
        self.sample("before subscribing", 0)
        mark = self.warmup
        while True:
            messages = delivered(subscribers)
            if messages >= mark:
                self.sample("warm-up" if mark == self.warmup else "", messages)
                mark += self.every
            await asyncio.sleep(0.05)


async def wait_for(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {within:.0f} s")
        await asyncio.sleep(0.01)


async def probe(writers: Writers, subscribers: list[Subscriber]) -> None:
    """Register agents one at a time until every subscriber has received one: all are live."""
    for attempt in range(50):
        await writers.register([f"soak-{writers.run}-probe-{attempt}"])
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: all(s.positions for s in subscribers), 0.2, "probe")
            return
    raise TimeoutError("subscribers received nothing")


async def soak(args: argparse.Namespace, server: stack.Server, pid: int) -> bool:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as http:
        start = max([0, *await positions(http, 0, None)])
        progress = asyncio.Event()
        subscribers = [Subscriber(i + 1, progress) for i in range(args.subscribers)]
        sampler = Sampler(pid, args.warmup, args.sample_every)
        tasks = [asyncio.create_task(s.run(server.websocket, server.token)) for s in subscribers]
        follower = asyncio.create_task(sampler.follow(subscribers))
        writers = Writers(
            http, secrets.token_hex(3), args.batch, args.window, subscribers, progress
        )
        try:
            await wait_for(lambda: all(s.subscribed.is_set() for s in subscribers), 15, "subscribe")
            await probe(writers, subscribers)
            writers.base = [len(s.positions) for s in subscribers]
            agents = math.ceil((args.messages - delivered(subscribers)) / len(subscribers))
            print(f"{len(subscribers)} subscribers live; writing {agents:,} agents", flush=True)
            began, cpu = time.monotonic(), stack.cpu_seconds(pid)
            await asyncio.gather(*(writers.write(agents) for _ in range(args.writers)))
            last = writers.last
            await wait_for(
                lambda: dead(subscribers) or all(s.positions[-1] >= last for s in subscribers),
                60,
                "the last event to reach every subscriber",
            )
            took, cpu = time.monotonic() - began, stack.cpu_seconds(pid) - cpu
            follower.cancel()
            sampler.sample("end", delivered(subscribers))
            await asyncio.sleep(args.settle)
            sampler.sample(f"+{args.settle:g} s idle", delivered(subscribers))
            # Read back for the check only now: a large read has a footprint of its own.
            expected = await positions(http, start, ["agent.*"])
            sampler.sample("after the check read", delivered(subscribers))
        finally:
            follower.cancel()
            for s in subscribers:
                await s.close()
            await asyncio.gather(*tasks, return_exceptions=True)
    print(f"server process: {cpu:.1f} CPU s while writing and delivering ({cpu / took:.0%})")
    return report(args, writers, subscribers, sampler, expected, took)


# ---- report -------------------------------------------------------------------------------------


def check_subscriber(s: Subscriber, expected: list[int], index: dict[int, int]) -> list[str]:
    """What is wrong with what one subscriber received (compared with the store)."""
    wrong = list(s.problems)
    if not s.positions:
        return [*wrong, "received nothing"]
    if s.foreign:
        wrong.append(f"{s.foreign} messages not of an agent.* type")
    first = index.get(s.positions[0])
    if first is None:
        return [*wrong, f"first position {s.positions[0]} is not an agent event of the store"]
    want = expected[first:]
    if s.positions != want:
        got = set(s.positions)
        missing = [p for p in want if p not in got]
        disorder = sum(1 for a, b in zip(s.positions, s.positions[1:], strict=False) if b <= a)
        extra = len(s.positions) - len(got & set(want))
        wrong.append(
            f"{len(missing)} missing (first {missing[:5]}), {disorder} out of order or repeated,"
            f" {extra} not expected"
        )
    return wrong


def report(
    args: argparse.Namespace,
    writers: Writers,
    subscribers: list[Subscriber],
    sampler: Sampler,
    expected: list[int],
    took: float,
) -> bool:
    messages = delivered(subscribers)
    lat = sorted(writers.latencies)
    p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)] if lat else math.nan
    print(
        f"\n{writers.written:,} agents written in {writers.requests:,} requests"
        f" (+{len(expected) - writers.written} probe) in {took:.1f} s;"
        f" {messages:,} messages delivered ({messages / took:,.0f}/s);"
        f" write request p50 {lat[len(lat) // 2] if lat else math.nan:.0f} ms, p99 {p99:.0f} ms"
    )
    print(f"load generator CPU: {time.process_time():.1f} s; {stack.loadavg()}")
    print(f"\n{'sample':<20} {'messages':>9} {'seconds':>8} {'RSS MiB':>8}")
    for label, count, seconds, rss in sampler.series:
        print(f"{label:<20} {count:>9,} {seconds:>8.1f} {rss / 1024:>8.1f}")
    warm = next((rss for label, _, _, rss in sampler.series if label == "warm-up"), None)
    final = sampler.series[-2][3]  # idle after the last delivery, before the check read
    index = {p: i for i, p in enumerate(expected)}
    print()
    ok_all = True
    for s in subscribers:
        wrong = check_subscriber(s, expected, index)
        ok_all &= not wrong
        span = f"{s.positions[0]}..{s.positions[-1]}" if s.positions else "-"
        print(
            f"subscriber {s.number:>2}: {len(s.positions):,} messages, positions {span}:"
            f" {'; '.join(wrong) or 'every agent event of the store from its first, in order'}"
        )
    if warm is None:
        print("\nFAIL  the warm-up was never reached")
        return False
    growth = (final - warm) / 1024
    checks = [
        (growth < args.limit_mib, f"RSS growth from warm-up to idle end: {growth:+.1f} MiB"
         f" ({warm / 1024:.1f} -> {final / 1024:.1f}; limit {args.limit_mib:.0f} MiB)"),
        (messages >= args.messages, f"{messages:,} messages delivered (target {args.messages:,})"),
        (ok_all, "every subscriber got every agent event in order, nothing else"),
        (not writers.failures, f"write failures: {len(writers.failures)} {writers.failures[:3]}"),
    ]  # fmt: skip
    print()
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in checks)
    print(f"overall: {'PASS' if passed else 'FAIL'}")
    return passed


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[stack.Server]:
    if args.url:
        if not Path(f"/proc/{args.pid}").exists():
            raise SystemExit(f"no process {args.pid} on this machine")
        command = Path(f"/proc/{args.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "lightning" not in command:
            print(f"warning: process {args.pid} is {command!r}, not a lightning server")
        yield stack.attached(args.url, args.token, args.pid)
        return
    mode = "distributed" if args.distributed else "embedded"
    start = stack.distributed if args.distributed else stack.embedded
    server: stack.Server | None = None
    try:
        with start("soak", keep=args.keep_logs) as server:
            print(f"started {server.url} ({mode}, server pid {server.pid}, in {server.workdir})")
            yield server
    finally:
        if server is not None:
            where = f" ({', '.join(map(str, server.logs))})" if args.keep_logs else ""
            print(f"\nlog lines with ERROR/CRITICAL/Traceback{where}:")
            for line in server.problems or ["(none)"]:
                print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="attach to this server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="its admin secret (with --url)")
    parser.add_argument("--pid", type=int, help="its process id, for the RSS (with --url)")
    parser.add_argument("--distributed", action="store_true", help="PostgreSQL + RabbitMQ")
    parser.add_argument("--messages", type=int, default=100_000, help="total to deliver")
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10_000, help="messages before the baseline")
    parser.add_argument("--sample-every", type=int, default=10_000, help="messages between samples")
    parser.add_argument("--batch", type=int, default=10, help="registerAgent per request (<= 10)")
    parser.add_argument("--writers", type=int, default=2, help="write requests in flight")
    parser.add_argument("--window", type=int, default=300, help="events ahead of the slowest")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds, then a sample")
    parser.add_argument("--limit-mib", type=float, default=20.0, help="allowed RSS growth")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.url and not (args.token and args.pid):
        parser.error("--url needs --token and --pid")
    if args.url and args.distributed:
        parser.error("--distributed starts a server; with --url there is nothing to start")
    with target(args) as server:
        assert server.pid is not None
        passed = asyncio.run(soak(args, server, server.pid))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
