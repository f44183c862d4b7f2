"""The lag scenario: how soon what is appended shows up, in distributed mode, on this machine.

1. **Append-to-read-model lag** at --rates events/s (default 500, 1,000 and 2,000): an open-loop
   producer starts ``registerAgent`` commands (two events each: the name reservation and
   ``agent.registered``) on a fixed schedule from --paced-threads threads, for --rate-seconds,
   through the service layer in this process; real ``lightning worker relay`` and ``worker
   projections`` processes carry the events through RabbitMQ. Lag = the moment the ``audit_log``
   projection's tracking position is first seen at or past a command's position, minus the
   moment the command returned. A sampler polls that position every --sample-interval s (5 ms:
   each lag is up to that much late, 2.5 ms on average) on its own connection. Target: p99
   <= 50 ms at 1,000 events/s (with at least 90 % of that rate achieved).
2. **Subscription delivery latency** at idle: a ``lightning serve`` process in distributed mode
   (no in-process bus: its live feed is woken by PostgreSQL's LISTEN/NOTIFY) and a websocket
   client here speaking graphql-transport-ws (``websockets``), subscribed to
   ``subscription { events(types: ["agent.*"]) { position } }``; --commands commands, one every
   --interval s; latency = the ``next`` message for the command's position received, minus the
   command's return (both this process's clock). Target: p99 <= 50 ms.

Each run has a fresh database ``lightning_bench_<random>`` (migrated, dropped at the end even on
failure or SIGTERM) and its own exchange and queue prefix (deleted at the end); the worker and
server processes are stopped with SIGTERM. The cluster (``Cluster``, ``PositionSampler``, the
paced producer) is ``pipeline.py``'s. Figures are medians of --runs runs; each run's, with the
achieved rates and each process's CPU during the paced runs, are in docs/bench/lag.json's
``details`` (``lag.png`` beside it).

    .venv/bin/python scripts/bench/lag.py [--runs 3] [--rates 500,1000,2000] [--commands 100]

The defaults take about two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    ADMIN_POSTGRES,
    AMQP,
    RESULTS,
    Databases,
    Row,
    log,
    machine,
    median,
    percentile,
    postgres_version,
    print_rows,
    write,
)
from pipeline import LightningBench, lightning_cluster

TARGET_MS = 50.0
TARGET_RATE = 1000.0  # events/s at which the lag target is held
ADMIN = "lag-bench-admin"
SUBSCRIPTION = 'subscription { events(types: ["agent.*"]) { position } }'


# ---- append-to-read-model lag -------------------------------------------------------------------


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU time (user + system) used so far by each named group of processes (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for name, group in pids.items():
        total = 0.0
        for pid in group:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        used[name] = total
    return used


def processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Paced:
    events_per_s: float  # asked for
    achieved_events_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    drain_ms: float
    cpu_percent: dict[str, float] = field(default_factory=dict)


def paced_lag(bench: LightningBench, events_per_s: float, args: argparse.Namespace) -> Paced:
    """One open-loop run at ``events_per_s`` (half as many commands), settled and measured."""
    groups = {
        "bench (producer)": [os.getpid()],
        "relay": [bench.cluster.processes[0].pid],
        "projections": [bench.cluster.processes[1].pid],
        "rabbitmq": processes_named("beam.smp"),
        "postgres": processes_named("postgres"),
    }
    before, started = cpu_seconds(groups), time.perf_counter()
    run = bench.paced(events_per_s / 2, args.rate_seconds, args.paced_threads)
    wall = time.perf_counter() - started
    after = cpu_seconds(groups)
    positions = sorted(p for _, p in run.returns if p is not None)
    per_command = (positions[-1] - positions[0]) / max(1, len(positions) - 1)
    return Paced(
        events_per_s=events_per_s,
        achieved_events_per_s=run.rate * per_command,
        p50_ms=percentile(run.lags_ms, 50),
        p99_ms=percentile(run.lags_ms, 99),
        max_ms=max(run.lags_ms),
        drain_ms=run.drain_ms,
        cpu_percent={k: 100 * (after[k] - before[k]) / wall for k in groups},
    )


# ---- subscription delivery ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``lightning serve`` in distributed mode on the cluster's database and broker."""

    def __init__(self, bench: LightningBench) -> None:
        self.port = free_port()
        env = bench.cluster.env() | {
            "LIGHTNING_ADMIN_SECRET": ADMIN,
            "LIGHTNING_HOST": "127.0.0.1",
            "LIGHTNING_PORT": str(self.port),
        }
        self.log_path = bench.cluster.workdir / "serve.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lightning.cli", "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{self.url}/health/ready", timeout=1, trust_env=False)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lightning serve did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


async def subscription_latency(
    bench: LightningBench, url: str, args: argparse.Namespace
) -> list[float]:
    """Milliseconds from each idle command's return to its event's ``next`` on the socket."""
    import websockets

    returned: dict[int, float] = {}
    received: dict[int, float] = {}
    arrived = asyncio.Event()
    async with websockets.connect(
        url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        max_queue=None,
    ) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {ADMIN}"}})
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        await ws.send(
            json.dumps({"id": "lag", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
        )

        async def read() -> None:
            async for raw in ws:
                now = time.perf_counter()
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message.get("type") == "next":
                    received.setdefault(message["payload"]["data"]["events"]["position"], now)
                    arrived.set()
                elif message.get("type") in {"error", "complete"}:
                    raise RuntimeError(f"subscription ended: {message}")

        reader = asyncio.create_task(read())
        try:
            # Live once a command's event arrives (the subscription starts at the feed's head).
            deadline = time.monotonic() + 30
            while not received:
                if time.monotonic() > deadline or reader.done():
                    raise RuntimeError("the subscription delivered nothing within 30 s")
                await asyncio.to_thread(bench.op, bench.index)
                bench.index += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(arrived.wait(), 1.0)
            await asyncio.sleep(args.interval)
            start = time.perf_counter()
            for i in range(args.commands):
                await asyncio.sleep(max(0.0, start + i * args.interval - time.perf_counter()))
                position = await asyncio.to_thread(bench.op, bench.index)
                returned[int(position or 0)] = time.perf_counter()
                bench.index += 1
            deadline = time.monotonic() + 30
            while not returned.keys() <= received.keys():
                if time.monotonic() > deadline or reader.done():
                    missing = sorted(returned.keys() - received.keys())[:10]
                    raise RuntimeError(f"events never arrived on the socket: {missing}")
                await asyncio.sleep(0.05)
        finally:
            reader.cancel()
    return [max(0.0, received[p] - at) * 1000 for p, at in returned.items()]


# ---- one run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    paced: list[Paced]
    subscription_ms: list[float]
    sampler_polls: int


def one_run(args: argparse.Namespace, databases: Databases, run: int) -> RunResult:
    url = databases.create()
    with lightning_cluster(url, args.amqp_url, args.sample_interval) as bench:
        bench.closed(4, 200)  # warm-up: workers, pools, prepared statements
        server = Server(bench)
        try:
            latencies = asyncio.run(subscription_latency(bench, server.url, args))
        except Exception:
            log(server.log_path.read_text()[-3000:])
            raise
        finally:
            server.stop()
        log(
            f"run {run + 1}: subscription at idle, {len(latencies)} commands: p50"
            f" {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms,"
            f" max {max(latencies):.1f} ms"
        )
        measured = []
        for rate in args.rates:
            time.sleep(1.0)  # let the previous run's tail settle
            paced = paced_lag(bench, rate, args)
            measured.append(paced)
            cpu = ", ".join(f"{k} {v:.0f}%" for k, v in paced.cpu_percent.items())
            log(
                f"run {run + 1}: {rate:,.0f} events/s asked, {paced.achieved_events_per_s:,.0f}"
                f" achieved: lag p50 {paced.p50_ms:.1f} ms, p99 {paced.p99_ms:.1f} ms, max"
                f" {paced.max_ms:.1f} ms, drain {paced.drain_ms:.0f} ms; CPU {cpu}"
            )
        polls = bench.sampler.polls
    databases.drop(url.rsplit("/", 1)[1])
    return RunResult(measured, latencies, polls)


# ---- rows ---------------------------------------------------------------------------------------


def rows_of(args: argparse.Namespace, results: list[RunResult]) -> list[Row]:
    rows: list[Row] = []
    for index, rate in enumerate(args.rates):
        runs = [r.paced[index] for r in results]
        achieved = median([p.achieved_events_per_s for p in runs])
        for q, name in ((50, "p50"), (99, "p99")):
            values = [p.p50_ms if q == 50 else p.p99_ms for p in runs]
            ours = median(values)
            held = q == 99 and rate == TARGET_RATE
            rows.append(
                Row(
                    name=f"append -> read model lag {name}, {rate:,.0f} events/s",
                    unit="ms",
                    ours=ours,
                    higher_is_better=False,
                    target=f"<= {TARGET_MS:.0f} ms" if held else "",
                    met=(ours <= TARGET_MS and achieved >= 0.9 * rate) if held else None,
                    runs=values,
                )
            )
    for q in (50, 99):
        values = [percentile(r.subscription_ms, q) for r in results]
        ours = median(values)
        rows.append(
            Row(
                name=f"subscription delivery p{q}, idle (distributed)",
                unit="ms",
                ours=ours,
                higher_is_better=False,
                target=f"<= {TARGET_MS:.0f} ms" if q == 99 else "",
                met=ours <= TARGET_MS if q == 99 else None,
                runs=values,
            )
        )
    return rows


def details_of(args: argparse.Namespace, results: list[RunResult]) -> dict[str, Any]:
    return {
        "paced": [
            {
                "events_per_s": p.events_per_s,
                "achieved_events_per_s": p.achieved_events_per_s,
                "p50_ms": p.p50_ms,
                "p99_ms": p.p99_ms,
                "max_ms": p.max_ms,
                "drain_ms": p.drain_ms,
                "cpu_percent": p.cpu_percent,
                "run": run,
            }
            for run, r in enumerate(results)
            for p in r.paced
        ],
        "subscription": [
            {
                "run": run,
                "p50_ms": percentile(r.subscription_ms, 50),
                "p99_ms": percentile(r.subscription_ms, 99),
                "max_ms": max(r.subscription_ms),
                "commands": len(r.subscription_ms),
            }
            for run, r in enumerate(results)
        ],
        "achieved_events_per_s": {
            f"{rate:.0f}": median([r.paced[i].achieved_events_per_s for r in results])
            for i, rate in enumerate(args.rates)
        },
        "sampler_polls": [r.sampler_polls for r in results],
        "lag_resolution_ms": args.sample_interval * 1000,
    }


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Append-to-read-model lag at fixed rates and live-subscription delivery "
        "latency at idle, distributed mode (PostgreSQL + RabbitMQ + worker processes).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",") if x.strip()],
        default="500,1000,2000",
        help="events/s of the paced runs (two events per command)",
    )
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="length of a paced run")
    parser.add_argument(
        "--paced-threads", type=int, default=16, help="threads issuing the paced commands"
    )
    parser.add_argument(
        "--commands", type=int, default=100, help="idle commands for the subscription latency"
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between them")
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.005,
        help="seconds between looks at the read model's position: the lag's resolution",
    )
    parser.add_argument("--postgres", default=ADMIN_POSTGRES, help="admin URL")
    parser.add_argument("--amqp-url", default=AMQP)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for lag.json/png")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.commands < 1 or not args.rates or min(args.rates) <= 0:
        parser.error("--runs, --commands and --rates must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: workers, server, queues and databases are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    described = machine(database=postgres_version(args.postgres), broker="RabbitMQ")
    databases = Databases(args.postgres)
    results: list[RunResult] = []
    try:
        for run in range(args.runs):
            results.append(one_run(args, databases, run))
    finally:
        databases.drop_all()
    rows = rows_of(args, results)
    print_rows("lag", rows, described, args.runs)
    for rate, achieved in details_of(args, results)["achieved_events_per_s"].items():
        print(f"  {float(rate):,.0f} events/s asked: {achieved:,.0f} achieved (median)")
    print(f"  lag resolution: {args.sample_interval * 1000:.0f} ms (position polls)")
    options = {k: v for k, v in vars(args).items() if k != "out"}
    path = write("lag", rows, described, args.runs, options, details_of(args, results), args.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
