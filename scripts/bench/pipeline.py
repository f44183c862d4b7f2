"""Benchmark Lightning's write pipeline against two baselines, side by side on this machine.

What it measures, for each client concurrency (threads; default 1, 8 and 64):

* **commands/s** (closed loop): every client thread issues its share of ``--commands`` commands
  back to back; the rate is commands / wall time from a common start barrier until the last
  command returned.
* **append-to-projection lag** (Lightning only): for each command, the time from its append
  returning (the service call's result, which carries the command's last position) to the moment
  the ``audit_log`` read model's tracking position (``consumer_tracking.notification_id``)
  reaches that position. A sampler thread polls the position every 5 ms (--sample-interval) on
  its own psycopg connection and records when each new position is first seen; lag = seen -
  returned
  (0 if the read model was already there). p50/p99 are over every command of a run.

The three systems:

1. raw psycopg: one connection per thread, ``INSERT`` of one ~400-byte jsonb row, ``COMMIT``
   (autocommit off, one commit per insert). Its commands/s at 1 client is the "raw single-writer"
   reference of the target.
2. stock eventsourcing 9.5.6: ``eventsourcing.application.Application`` on PostgreSQL
   (``PERSISTENCE_MODULE=eventsourcing.postgres``, ``CREATE_TABLE=y``), one small aggregate
   created and saved per command (one event).
3. Lightning, distributed: ``app.agents.register(...)`` through the service layer (two events per
   command: the name reservation and ``agent.registered``), with real ``python -m lightning.cli
   worker relay`` and ``worker projections`` subprocesses connected through RabbitMQ under a
   per-run exchange and queue prefix.

Then a fixed-rate lag measurement: Lightning paced at ``--rate`` commands/s (default 500, about
1,000 events/s) for ``--rate-seconds`` by an open-loop producer (commands are started on a fixed
schedule by a pool of threads); the lag target refers to that figure.

The raw and stock systems, the load generator and the databases are shared with the bench suite
(``append.py``, ``common.py``; the append scenario measures the same commands/s in-process, and
``run.py`` runs the suite). Every measurement is repeated ``--runs`` times and the table shows
medians. Each system gets its own fresh database ``lightning_bench_<random>``, dropped at the end
even on failure; the worker processes are stopped with SIGTERM and the run's RabbitMQ queues and
exchanges are deleted.

Run (from the repository root)::

    .venv/bin/python scripts/bench/pipeline.py [--commands N] [--runs R] [--concurrency 1,8,64]

The defaults (2,000 commands per concurrency level, 3 runs, 1/8/64 clients, 5 s at 500 cmd/s)
take roughly 2-4 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aio_pika
import psycopg
from append import raw_system, stock_system
from common import (
    Databases,
    Op,
    Run,
    closed_loop,
    log,
    median,
    migrate,
    percentile,
    scalar,
)

from lightning.bootstrap import Lightning
from lightning.bus.rabbitmq import Topology
from lightning.config import Settings
from lightning.services import SYSTEM, Context

ENCRYPTION_KEY = os.environ.get("LIGHTNING_ENCRYPTION_KEY") or (
    "bench:" + base64.b64encode(os.urandom(32)).decode()
)

WATCHED = "audit_log"
TARGET = (
    "target: at 64 clients Lightning cmd/s >= 4x raw single-writer insert+commit; "
    "lag p99 <= 50 ms at 1,000 events/s"
)
TARGET_FACTOR = 4.0
TARGET_LAG_P99_MS = 50.0
TARGET_EVENTS_PER_S = 1000.0

# ---- results ------------------------------------------------------------------------------------


@dataclass
class Results:
    """Per system and concurrency, the runs measured."""

    raw: dict[int, list[Run]] = field(default_factory=dict)
    stock: dict[int, list[Run]] = field(default_factory=dict)
    lightning: dict[int, list[Run]] = field(default_factory=dict)
    paced: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    server_version: str = "?"
    load_at_start: str = "?"


# ---- load generators ----------------------------------------------------------------------------


def paced(op: Op, rate: float, seconds: float, threads: int, first: int) -> Run:
    """Open loop: command i is started at ``t0 + i / rate`` by whichever thread is free."""
    total = max(1, round(rate * seconds))
    lock = threading.Lock()
    counter = iter(range(total))
    returns: list[tuple[float, int | None]] = []
    errors: list[BaseException] = []
    t0 = time.perf_counter() + 0.05

    def work() -> None:
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                position = op(first + i)
                returns.append((time.perf_counter(), position))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, name=f"paced-{k}", daemon=True) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    end = max(t for t, _ in returns)
    return Run(commands=len(returns), seconds=end - t0, returns=returns)


# ---- the read model's position ------------------------------------------------------------------


class PositionSampler:
    """Polls one projection's tracking position every ``interval`` s on its own connection and
    remembers when each new position was first seen."""

    def __init__(self, url: str, projection: str, interval: float = 0.001) -> None:
        self.url = url
        self.projection = projection
        self.interval = interval
        self.polls = 0
        self._times: list[float] = []
        self._positions: list[int] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="position-sampler", daemon=True)

    @property
    def latest(self) -> int:
        return self._positions[-1] if self._positions else 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        query = "SELECT notification_id FROM consumer_tracking WHERE application_name = %s"
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.cursor()
                while not self._stop.is_set():
                    cur.execute(query, (self.projection,), prepare=True)
                    row = cur.fetchone()
                    seen = time.perf_counter()
                    self.polls += 1
                    position = int(row[0]) if row else 0
                    if not self._positions or position > self._positions[-1]:
                        self._times.append(seen)  # times first: readers index by position
                        self._positions.append(position)
                    time.sleep(self.interval)
        except BaseException as exc:
            self._error = exc

    def wait_for(self, position: int, timeout: float) -> float:
        """Block until the projection reached ``position``; return when it was first seen."""
        deadline = time.monotonic() + timeout
        while self.latest < position:
            if self._error is not None:
                raise RuntimeError(f"position sampler failed: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.projection} at {self.latest}, expected {position} after {timeout}s"
                )
            time.sleep(0.005)
        return self.seen_at(position)

    def seen_at(self, position: int) -> float:
        return self._times[bisect.bisect_left(self._positions, position)]

    def lags_ms(self, returns: Sequence[tuple[float, int | None]]) -> list[float]:
        return [
            max(0.0, self.seen_at(position) - returned) * 1000
            for returned, position in returns
            if position is not None
        ]


# ---- system 1: raw psycopg ----------------------------------------------------------------------


def bench_raw(args: argparse.Namespace, databases: Databases, results: Results) -> None:
    url = databases.create()
    with raw_system(url) as (client, _):
        index = closed_loop(4, 200, 0, client).commands  # warm-up
        for run in range(args.runs):
            for c in args.concurrency:
                measured = closed_loop(c, args.commands, index, client)
                index += measured.commands
                results.raw.setdefault(c, []).append(measured)
                log(f"raw psycopg      c={c:<3} run {run + 1}: {measured.rate:8.0f} cmd/s")
    size = scalar(url, "SELECT avg(pg_column_size(body))::int FROM bench_raw")
    results.notes.append(f"raw psycopg row body: ~{size} bytes jsonb")


# ---- system 2: stock eventsourcing --------------------------------------------------------------


def bench_stock(args: argparse.Namespace, databases: Databases, results: Results) -> None:
    url = databases.create()
    with stock_system(url) as (client, _):
        index = closed_loop(4, 200, 0, client).commands  # warm-up
        for run in range(args.runs):
            for c in args.concurrency:
                measured = closed_loop(c, args.commands, index, client)
                index += measured.commands
                results.stock.setdefault(c, []).append(measured)
                log(f"eventsourcing    c={c:<3} run {run + 1}: {measured.rate:8.0f} cmd/s")
    size = scalar(url, "SELECT avg(length(state))::int FROM benchapp_events")
    results.notes.append(f"stock eventsourcing event: ~{size} bytes state, 1 event per command")


# ---- system 3: Lightning, distributed -----------------------------------------------------------


@dataclass
class Cluster:
    """Relay and projection worker processes on a unique exchange and queue prefix."""

    database_url: str
    amqp_url: str
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(5))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_files: list[TextIO] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"lightning.events.bench-{self.run_id}"

    @property
    def queue_prefix(self) -> str:
        return f"lightning-bench-{self.run_id}"

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            amqp_url=self.amqp_url,
            exchange=self.exchange,
            queue_prefix=self.queue_prefix,
            encryption_key=ENCRYPTION_KEY,
        )

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")}
        return base | {
            "LIGHTNING_DATABASE_URL": self.database_url,
            "LIGHTNING_AMQP_URL": self.amqp_url,
            "LIGHTNING_EXCHANGE": self.exchange,
            "LIGHTNING_QUEUE_PREFIX": self.queue_prefix,
            "LIGHTNING_ENCRYPTION_KEY": ENCRYPTION_KEY,
        }

    def start_worker(self, kind: str) -> None:
        log_file = (self.workdir / f"worker-{kind}.log").open("w")
        self.log_files.append(log_file)
        self.processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "lightning.cli", "worker", kind],
                env=self.env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        )

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"worker {process.args!r} exited with {process.returncode}\n{self.logs()}"
                )

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"worker {process.pid} ignored SIGTERM; killing it")
                process.kill()
                process.wait()
        for log_file in self.log_files:
            log_file.close()

    async def delete_topology(self) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            await Topology.from_settings(self.settings()).delete(
                connection, ("projections", "sagas", "webhooks")
            )


@dataclass
class LightningBench:
    app: Lightning
    sampler: PositionSampler
    cluster: Cluster
    index: int = 0

    def op(self, i: int) -> int | None:
        result = self.app.agents.register(
            Context(SYSTEM), name=f"bench-{i}", provider="grok", model="grok-code-fast-1"
        )
        return result.position

    def client(self) -> AbstractContextManager[Op]:
        return contextlib.nullcontext(self.op)

    def settle(self, run: Run, timeout: float = 180) -> None:
        """Wait until the watched projection applied the run's last command, then work out the
        run's lags, its drain time and the read model's apply rate."""
        positions = [p for _, p in run.returns if p is not None]
        first, last = min(positions), max(positions)
        try:
            seen = self.sampler.wait_for(last, timeout)
        except TimeoutError:
            self.cluster.check_alive()
            raise
        run.lags_ms = self.sampler.lags_ms(run.returns)
        run.drain_ms = (seen - max(t for t, _ in run.returns)) * 1000
        span = seen - self.sampler.seen_at(first)
        run.applied_per_s = (last - first) / span if span > 0 else math.nan

    def closed(self, concurrency: int, commands: int) -> Run:
        measured = closed_loop(concurrency, commands, self.index, self.client)
        self.index += measured.commands
        self.settle(measured)
        return measured

    def paced(self, rate: float, seconds: float, threads: int) -> Run:
        measured = paced(self.op, rate, seconds, threads, self.index)
        self.index += measured.commands
        self.settle(measured)
        return measured


@contextlib.contextmanager
def lightning_cluster(url: str, amqp_url: str, interval: float) -> Iterator[LightningBench]:
    migrate(url)
    with tempfile.TemporaryDirectory(prefix="lightning-bench-") as workdir:
        cluster = Cluster(url, amqp_url, Path(workdir))
        app: Lightning | None = None
        sampler = PositionSampler(url, WATCHED, interval)
        try:
            cluster.start_worker("relay")
            cluster.start_worker("projections")
            app = Lightning.open(cluster.settings())
            sampler.start()
            bench = LightningBench(app, sampler, cluster)
            try:
                first = bench.op(bench.index)  # readiness: a command makes it to the read model
                bench.index += 1
                assert first is not None
                sampler.wait_for(first, timeout=60)
            except Exception:
                log(cluster.logs())
                raise
            yield bench
        finally:
            sampler.stop()
            cluster.stop()
            try:
                asyncio.run(cluster.delete_topology())
            except Exception as exc:
                log(f"could not clean up RabbitMQ topology of {cluster.queue_prefix}: {exc}")
            if app is not None:
                app.close()


def lightning_line(label: str, run: Run) -> str:
    return (
        f"{label}: {run.rate:8.0f} cmd/s, lag p50 {percentile(run.lags_ms, 50):7.1f} ms,"
        f" p99 {percentile(run.lags_ms, 99):7.1f} ms, drain {run.drain_ms:7.1f} ms,"
        f" read model applied {run.applied_per_s:5.0f} events/s"
    )


def bench_lightning(args: argparse.Namespace, databases: Databases, results: Results) -> None:
    url = databases.create()
    with lightning_cluster(url, args.amqp_url, args.sample_interval) as bench:
        bench.closed(4, 200)  # warm-up
        for run in range(args.runs):
            for c in args.concurrency:
                measured = bench.closed(c, args.commands)
                results.lightning.setdefault(c, []).append(measured)
                log(lightning_line(f"lightning        c={c:<3} run {run + 1}", measured))
        for run in range(args.runs):
            measured = bench.paced(args.rate, args.rate_seconds, args.paced_threads)
            results.paced.append(measured)
            log(lightning_line(f"lightning paced  {args.rate:.0f}/s run {run + 1}", measured))
        for c, runs in results.lightning.items():
            results.notes.append(
                f"Lightning@{c}: read model drained its backlog"
                f" {median([r.drain_ms for r in runs]):.0f} ms after the last command, applying"
                f" {median([r.applied_per_s for r in runs]):.0f} events/s (medians)"
            )
        results.notes.append(
            f"position sampler: {bench.sampler.polls} polls over the Lightning phase"
        )
    size = scalar(url, "SELECT avg(length(state))::int FROM stored_events")
    results.notes.append(f"Lightning event: ~{size} bytes state, 2 events per command")


# ---- report -------------------------------------------------------------------------------------


def rate_of(runs: dict[int, list[Run]], c: int) -> float:
    return median([r.rate for r in runs.get(c, [])])


def lag_of(runs: dict[int, list[Run]], c: int, q: float) -> float:
    return median([percentile(r.lags_ms, q) for r in runs.get(c, [])])


def fmt(value: float, spec: str, suffix: str = "", width: int = 0) -> str:
    text = "-" if math.isnan(value) else f"{value:{spec}}{suffix}"
    return text.rjust(width)


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def table(args: argparse.Namespace, results: Results) -> list[str]:
    raw_single = rate_of(results.raw, 1)
    header = (
        f"{'clients':>7} | {'raw cmd/s':>9} | {'stock ES cmd/s':>14} | {'Lightning cmd/s':>15} |"
        f" {'lag p50 ms':>10} | {'lag p99 ms':>10} | {'L/raw@1':>7} | {'L/stock':>7}"
    )
    lines = [header, "-" * len(header)]
    for c in args.concurrency:
        lightning = rate_of(results.lightning, c)
        stock = rate_of(results.stock, c)
        lines.append(
            f"{c:>7} | {fmt(rate_of(results.raw, c), '.0f', width=9)} |"
            f" {fmt(stock, '.0f', width=14)} | {fmt(lightning, '.0f', width=15)} |"
            f" {fmt(lag_of(results.lightning, c, 50), '.1f', width=10)} |"
            f" {fmt(lag_of(results.lightning, c, 99), '.1f', width=10)} |"
            f" {fmt(ratio(lightning, raw_single), '.2f', 'x', 7)} |"
            f" {fmt(ratio(lightning, stock), '.2f', 'x', 7)}"
        )
    lines.append("(raw and stock eventsourcing have no read model: lag n/a)")
    return lines


def paced_summary(args: argparse.Namespace, results: Results) -> tuple[list[str], float, float]:
    runs = results.paced
    cmd_rate = median([r.rate for r in runs])
    event_rate = median([r.rate * events_per_command(r) for r in runs])
    p50 = median([percentile(r.lags_ms, 50) for r in runs])
    p99 = median([percentile(r.lags_ms, 99) for r in runs])
    lines = [
        f"fixed rate: Lightning paced at {args.rate:.0f} cmd/s for {args.rate_seconds:.0f} s"
        f" ({args.paced_threads} producer threads): achieved {fmt(cmd_rate, '.0f')} cmd/s"
        f" = {fmt(event_rate, '.0f')} events/s; lag p50 {fmt(p50, '.1f')} ms,"
        f" p99 {fmt(p99, '.1f')} ms, max {fmt(median([max(r.lags_ms) for r in runs]), '.1f')} ms"
    ]
    return lines, event_rate, p99


def events_per_command(run: Run) -> float:
    positions = sorted(p for _, p in run.returns if p is not None)
    if len(positions) < 2:
        return math.nan
    return (positions[-1] - positions[0]) / (len(positions) - 1)


def verdict(args: argparse.Namespace, results: Results, event_rate: float, p99: float) -> list[str]:
    lines = [TARGET]
    raw_single = rate_of(results.raw, 1)
    lightning_64 = rate_of(results.lightning, 64)
    if math.isnan(lightning_64) or math.isnan(raw_single):
        lines.append("  throughput: not measured (needs concurrency 1 and 64)")
    else:
        met = lightning_64 >= TARGET_FACTOR * raw_single
        lines.append(
            f"  throughput: Lightning@64 {lightning_64:.0f} cmd/s vs {TARGET_FACTOR:.0f} x raw@1"
            f" {raw_single:.0f} = {TARGET_FACTOR * raw_single:.0f} cmd/s"
            f" ({lightning_64 / raw_single:.2f}x) -> {'MET' if met else 'NOT MET'}"
        )
    if math.isnan(p99):
        lines.append("  lag: not measured")
    else:
        rate_ok = event_rate >= 0.9 * TARGET_EVENTS_PER_S
        met = p99 <= TARGET_LAG_P99_MS and rate_ok
        why = "" if rate_ok else f" (only {event_rate:.0f} events/s achieved)"
        lines.append(
            f"  lag: p99 {p99:.1f} ms at {event_rate:.0f} events/s (limit {TARGET_LAG_P99_MS:.0f}"
            f" ms) -> {'MET' if met else 'NOT MET'}{why}"
        )
    return lines


def report(args: argparse.Namespace, results: Results, elapsed: float) -> None:
    paced_lines, event_rate, p99 = paced_summary(args, results)
    print()
    print(
        f"pipeline benchmark: {args.commands} commands per level, medians of {args.runs} run(s),"
        f" {os.cpu_count()} CPU(s), PostgreSQL {results.server_version},"
        f" load average at start {results.load_at_start}"
    )
    for line in table(args, results):
        print(line)
    print()
    for line in paced_lines:
        print(line)
    print()
    for line in verdict(args, results, event_rate, p99):
        print(line)
    print()
    for note in results.notes:
        print(f"note: {note}")
    print(f"total runtime: {elapsed:.1f} s")


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Commands/s of raw psycopg insert+commit, stock eventsourcing and distributed "
            "Lightning at several client concurrencies, plus Lightning's append-to-projection "
            "lag. Defaults (2000 commands x 3 runs x 1/8/64 clients, 3 x 5 s paced at 500 cmd/s) "
            "take roughly 2-4 minutes on a 2-core machine."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--commands", type=int, default=2000, help="commands per measurement")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default="1,8,64",
        help="comma-separated client thread counts",
    )
    parser.add_argument(
        "--rate", type=float, default=500.0, help="paced Lightning commands/s (2 events each)"
    )
    parser.add_argument("--rate-seconds", type=float, default=5.0, help="paced run length")
    parser.add_argument(
        "--paced-threads", type=int, default=16, help="threads issuing the paced commands"
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin URL; benchmark databases are created next to it",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.005,
        help="seconds between position polls: the lag resolution. Polling is load on the same "
        "2 cores as the system measured; 5 ms is fine-grained enough for a 50 ms target",
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--systems",
        default="raw,stock,lightning",
        help="comma-separated subset of raw,stock,lightning",
    )
    args = parser.parse_args(argv)
    if args.commands < 1 or args.runs < 1 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--commands, --runs and --concurrency must be positive")
    args.systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    if not set(args.systems) <= {"raw", "stock", "lightning"}:
        parser.error("--systems takes raw, stock and/or lightning")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the workers, queues and databases are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    results = Results()
    results.server_version = str(scalar(args.postgres, "SHOW server_version"))
    results.load_at_start = "/".join(f"{x:.2f}" for x in os.getloadavg())
    benches = {"raw": bench_raw, "stock": bench_stock, "lightning": bench_lightning}
    databases = Databases(args.postgres)
    try:
        for name in args.systems:
            benches[name](args, databases, results)
    except (KeyboardInterrupt, SystemExit):
        log("interrupted: stopping workers, deleting queues and databases")
        raise
    finally:
        databases.drop_all()
    report(args, results, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
