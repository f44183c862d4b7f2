"""The api scenario: Lightning's GraphQL edge under wrk, against a plain litestar app measured in
the same run on the same machine (medians of ``--runs``; ratio = ours / baseline).

Rows, each at ``--connections`` (64) connections:

1. ``registerAgent`` with ONE fixed document and the input in ``variables`` (every name unique:
   ``register.lua`` makes it from a per-run prefix, the thread, a counter and a random part)
   against ``plain_app.py``'s ``POST /register``: one INSERT of a ~400-byte jsonb row + COMMIT.
   Target >= 0.5x.
2. the same mutation with the name inlined, so every document differs (``register_unique.lua``),
   against the same plain endpoint.
3. ``agents(first: 50)`` (id name provider model configVersion status, and pageInfo) on a read
   model holding at least ``--min-agents`` agents (those of rows 1-2, topped up if need be),
   against ``POST /agents`` issuing the resolver's SQL and answering the same JSON shape.
4. ``{ __typename }`` (``typename.lua``) with the same key: what the edge costs by itself (HTTP,
   authentication, the document caches, the cost limit, the executor; no resolver, no store),
   shown against the plain INSERT endpoint of row 1 to split row 1's gap between the edge and
   what is behind it (the command, the store, and the relay and consumers sharing the cores).

Setup: a fresh database ``lightning_bench_<random>`` migrated with ``lightning db migrate``;
``lightning worker all`` and ``lightning serve`` (``--workers`` when more than one is asked for
and the command has the option) on a per-run RabbitMQ exchange and queue prefix; the plain app
under uvicorn with the same number of server processes, on the same database (its own table).
The load uses an API key of role operator, issued by ``issueApiKey`` with the admin secret.
Before each measured run: the read models caught up (``/health/ready``: every consumer's lag 0)
and ``--warmup`` seconds of the same load, not counted. wrk runs with 2 threads on the same
2 cores as the servers and competes with them for CPU. A response that is not 2xx, or carries
GraphQL ``errors``, or a socket error makes the run one with errors: it is printed, counted out
of the rate, flagged in the row's name, and the scenario exits 1.

``--py-spy FILE`` records ``lightning serve`` during one more registerAgent run (not counted):
speedscope JSON, or a flamegraph for ``.svg``, or raw stacks for ``.txt``.

    .venv/bin/python scripts/bench/api.py [--runs 3] [--duration 10] [--connections 64]
        [--workers 1] [--py-spy FILE]

Beside it: ``api_servers.py`` (the processes), ``api_wrk.py`` (wrk and its output),
``plain_app.py`` (the baseline) and the Lua scripts. The defaults take about 5 minutes; results
go to docs/bench/api.json and api.png, and ``scripts/bench/run.py`` puts them in the README.
Everything started is stopped, the RabbitMQ queues and exchanges deleted and the database
dropped at the end, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from api_servers import Servers, operator_key, serve_takes_workers, settle
from api_wrk import THREADS, TIMEOUT_S, WrkRun, wrk
from common import (
    ADMIN_POSTGRES,
    AMQP,
    RESULTS,
    Databases,
    Row,
    log,
    machine,
    median,
    postgres_version,
    print_rows,
    scalar,
    write,
)
from plain_app import TABLE

PLAIN_INSERT = "plain litestar: INSERT ~400 B jsonb + COMMIT"
PLAIN_SELECT = "plain litestar: the resolver's SELECT"
SETTLE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Case:
    key: str
    name: str
    script: str
    plain_path: str
    baseline_name: str
    target: str = ""
    target_ratio: float | None = None


CASES = (
    Case(
        "register", "registerAgent, 1 document", "register.lua", "/register", PLAIN_INSERT,
        ">= 0.5x", 0.5,
    ),
    Case("unique", "registerAgent, unique documents", "register_unique.lua", "/register",
         PLAIN_INSERT),
    Case("agents", "agents(first: 50)", "agents.lua", "/agents", PLAIN_SELECT),
    Case("floor", "{ __typename } (the edge alone)", "typename.lua", "/register", PLAIN_INSERT),
)  # fmt: skip


# ---- measuring ----------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    servers: Servers
    key: str
    runs: dict[tuple[str, str], list[WrkRun]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settled_s: list[float] = field(default_factory=list)

    def url(self, case: Case, system: str) -> str:
        if system == "lightning":
            return f"{self.servers.lightning}/graphql"
        return f"{self.servers.plain}{case.plain_path}"

    def load(self, case: Case, system: str, seconds: float) -> WrkRun:
        prefix = f"b{secrets.token_hex(4)}"  # names unique across every wrk run
        url = self.url(case, system)
        return wrk(url, case.script, seconds, self.args.connections, self.key, prefix)

    def measure(self, case: Case, system: str, label: str) -> WrkRun:
        self.settled_s.append(settle(self.servers))
        if self.args.warmup > 0:
            warm = self.load(case, system, self.args.warmup)
            if warm.errors:
                log(f"  warm-up {system} {case.key}: {warm.summary()}")
        measured = self.load(case, system, self.args.duration)
        log(f"{label} {system:<9} {case.key:<8} {measured.summary()}")
        self.runs.setdefault((case.key, system), []).append(measured)
        return measured

    def agents(self) -> int:
        return int(scalar(self.servers.database_url, "SELECT count(*) FROM agents"))

    def fill(self) -> None:
        """Register agents (unmeasured) until the read model holds --min-agents."""
        while (count := self.agents()) < self.args.min_agents:
            log(f"  read model holds {count} agents; registering more")
            loaded = self.load(CASES[0], "lightning", 3)
            if loaded.rate == 0:
                raise RuntimeError(f"registerAgent fails: {loaded.summary()}")
            settle(self.servers)

    def run(self, index: int) -> None:
        for case in CASES:
            if case.key == "agents":
                self.fill()
                self.notes.append(f"run {index}: agents row read a model of {self.agents()}")
            for system in ("plain", "lightning"):
                self.measure(case, system, f"run {index}")

    def profile(self, path: Path) -> WrkRun:
        """One more registerAgent run (not counted) with py-spy recording ``lightning serve``."""
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        fmt = {".svg": "flamegraph", ".txt": "raw"}.get(path.suffix, "speedscope")
        serve = self.servers.processes["serve"]
        command = [spy, "record", "-p", str(serve.pid), "--nonblocking", "-o", str(path)]
        command += ["--format", fmt, "-d", str(math.ceil(self.args.duration))]
        if self.servers.workers > 1:
            command.append("--subprocesses")
        settle(self.servers)
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            measured = self.load(CASES[0], "lightning", self.args.duration)
            _, err = recorder.communicate(timeout=60)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
        if recorder.returncode != 0:
            log(f"py-spy failed ({recorder.returncode}): {err.decode(errors='replace')[-500:]}")
        else:
            log(f"profile of lightning serve ({fmt}) written to {path}")
        log(f"profiled lightning register {measured.summary()}")
        return measured


# ---- report -------------------------------------------------------------------------------------


def rows_of(bench: Bench) -> list[Row]:
    rows = []
    for case in CASES:
        ours = bench.runs.get((case.key, "lightning"), [])
        base = bench.runs.get((case.key, "plain"), [])
        failed = sum(1 for r in ours + base if r.errors)
        name = f"{case.name}, {bench.args.connections} conn"
        row = Row(
            name=name + (f" [ERRORS in {failed} run(s)]" if failed else ""),
            unit="req/s",
            ours=median([r.rate for r in ours]),
            baseline=median([r.rate for r in base]),
            baseline_name=case.baseline_name,
            target=case.target,
            runs=[r.rate for r in ours],
            baseline_runs=[r.rate for r in base],
        )
        if case.target_ratio is not None and row.ratio is not None:
            row.met = row.ratio >= case.target_ratio and not failed
        rows.append(row)
    return rows


def latencies(bench: Bench) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for case in CASES:
        for system in ("lightning", "plain"):
            runs = bench.runs.get((case.key, system), [])
            found[f"{case.key}/{system}"] = {
                "p50_ms": median([r.p50_ms for r in runs]),
                "p99_ms": median([r.p99_ms for r in runs]),
                "errors": sum(r.errors for r in runs),
                "runs": [asdict(r) | {"rate": r.rate} for r in runs],
            }
    return found


def print_latencies(details: dict[str, Any]) -> None:
    print("  latency (medians of the runs' wrk percentiles):")
    for case in CASES:
        ours, base = details[f"{case.key}/lightning"], details[f"{case.key}/plain"]
        errors = ours["errors"] + base["errors"]
        print(
            f"    {case.name:<34} ours p50 {ours['p50_ms']:7.1f} ms  p99 {ours['p99_ms']:7.1f} ms"
            f" | plain p50 {base['p50_ms']:6.1f} ms  p99 {base['p99_ms']:6.1f} ms"
            + (f"  ({errors} failed responses)" if errors else "")
        )


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).split("\n")[0].split(" [")[0].strip()


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Lightning's GraphQL edge under wrk against a plain litestar app (about 5"
        " minutes with the defaults).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, Lightning's and the plain app's"
    )
    parser.add_argument("--min-agents", type=int, default=3000, help="agents for the read row")
    parser.add_argument("--py-spy", type=Path, metavar="FILE", help="profile lightning serve")
    parser.add_argument("--postgres", default=ADMIN_POSTGRES, help="admin URL")
    parser.add_argument("--amqp-url", default=AMQP)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of the results")
    args = parser.parse_args(argv)
    if min(args.runs, args.connections, args.workers) < 1 or args.duration < 1:
        parser.error("--runs, --connections, --workers and --duration must be positive")
    return args


def measure_all(args: argparse.Namespace, servers: Servers, details: dict[str, Any]) -> Bench:
    servers.migrate()
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(TABLE)
    servers.start_all()
    servers.wait_ready()
    bench = Bench(args, servers, operator_key(servers))
    for index in range(1, args.runs + 1):
        bench.run(index)
    if args.py_spy is not None:
        details["profile"] = {"file": str(args.py_spy), **asdict(bench.profile(args.py_spy))}
    details["read_models_caught_up_s_max"] = max(bench.settled_s, default=math.nan)
    return bench


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        log("the api scenario needs wrk (apt-get install wrk)")
        return 2
    # SIGTERM unwinds like Ctrl-C, so the servers, queues and the database are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pass_workers = args.workers > 1 and serve_takes_workers()
    if args.workers > 1 and not pass_workers:
        log("`lightning serve` has no --workers yet: measuring 1 server process on both sides")
        args.workers = 1
    described = machine(
        database=postgres_version(args.postgres),
        wrk=f"{wrk_version()}, -t{THREADS} on the same cores, --timeout {TIMEOUT_S}s",
        server_processes=str(args.workers),
    )
    details: dict[str, Any] = {}
    databases = Databases(args.postgres)
    with tempfile.TemporaryDirectory(prefix="lightning-bench-api-") as workdir:
        url = databases.create()
        servers = Servers(Path(workdir), url, args.amqp_url, args.workers, pass_workers)
        try:
            bench = measure_all(args, servers, details)
        finally:
            servers.stop()
            try:
                asyncio.run(servers.delete_topology())
            except Exception as exc:
                log(f"could not delete the RabbitMQ topology of {servers.queue_prefix}: {exc}")
            databases.drop_all()
    rows = rows_of(bench)
    details |= {"latency": latencies(bench), "notes": bench.notes}
    print_rows("api: Lightning's GraphQL edge vs plain litestar (wrk)", rows, described, args.runs)
    print_latencies(details["latency"])
    print(
        f"  wrk -t{THREADS} -c{args.connections}, {args.duration:g} s per run after"
        f" {args.warmup:g} s warm-up, on the same {os.cpu_count()} cores as the servers;"
        f" {args.workers} server process(es) each"
    )
    for note in bench.notes:
        print(f"  note: {note}")
    options = {k: str(v) for k, v in vars(args).items() if k not in ("postgres", "amqp_url")}
    path = write("api", rows, described, args.runs, options, details, args.out)
    log(f"results written to {path}")
    return 1 if any("[ERRORS" in r.name for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
