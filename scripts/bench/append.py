"""The append scenario: registerAgent commands/s in-process, next to two baselines measured in
the same run, at 1, 8 and 64 concurrent callers (threads; ``--concurrency``).

1. Lightning: ``app.agents.register(...)`` through the service layer, the name reservation
   included (two events per command, group-committed), on PostgreSQL. No consumer runs: this is
   the write path alone (the lag scenario measures the read side).
2. raw psycopg: one connection per caller, ``INSERT`` of one ~400-byte jsonb row shaped like an
   event envelope, ``COMMIT`` (one commit per command).
3. stock eventsourcing: ``eventsourcing.application.Application`` on PostgreSQL, one small
   aggregate created and saved per command (one event), one application shared by the callers.

Every system commits durably: ``synchronous_commit`` is read back in each one's own database
session and the run refuses to start unless it is ``on`` (and reports ``fsync``).

A run measures every level for each system, interleaved (level by level, raw then stock then
Lightning) so that a change in the machine's load touches all three alike; each caller issues
its share of ``--commands`` back to back and the rate is commands / wall time from a common
start barrier to the last return. Each run has fresh databases ``lightning_bench_<random>``,
dropped at its end, also on failure or SIGTERM. Rows: per level, Lightning against raw and
against stock (medians of ``--runs``); the targets (stretch) are at 64 callers.

    .venv/bin/python scripts/bench/append.py [--runs 3] [--commands 2000] [--concurrency 1,8,64]

The defaults take about a minute on a 2-core machine; results go to docs/bench/append.json and
append.png (``--out`` elsewhere), and ``scripts/bench/run.py`` puts them in the README.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from common import (
    ADMIN_POSTGRES,
    RESULTS,
    Client,
    Databases,
    Op,
    Row,
    Run,
    closed_loop,
    eventsourcing_env,
    log,
    machine,
    median,
    migrate,
    postgres_version,
    print_rows,
    scalar,
    write,
)
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from psycopg.types.json import Jsonb

SYSTEMS = ("raw", "stock", "lightning")
LABELS = {
    "raw": "raw psycopg INSERT (~400 B jsonb) + COMMIT",
    "stock": "stock eventsourcing Application (PostgreSQL)",
    "lightning": "Lightning registerAgent (service layer)",
}
# At 64 callers (stretch): Lightning's commands/s against each baseline's at the same level.
TARGETS = {"raw": 2.0, "stock": 10.0}
TARGET_LEVEL = 64
WARM_UP = 200  # commands from 4 callers before a system's first level in a run


# ---- payloads -----------------------------------------------------------------------------------


def agent_fields(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "description": "",
        "provider": "grok",
        "model": "grok-code-fast-1",
        "temperature": 0.7,
        "max_tokens": 4096,
        "system_prompt": "",
        "tools": [],
    }


def envelope_like(i: int) -> dict[str, Any]:
    """A jsonb body shaped (and sized, ~400 bytes) like one of Lightning's event envelopes."""
    return {
        "id": str(uuid.uuid4()),
        "type": "agent.registered",
        "aggregate_id": str(uuid.uuid4()),
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "actor": "system",
        "data": agent_fields(i),
    }


def synchronous_commit(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    return str(row["synchronous_commit"] if isinstance(row, dict) else row[0])


# ---- the systems: each yields the Client its callers use ----------------------------------------


@contextlib.contextmanager
def raw_system(url: str) -> Iterator[tuple[Client, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_raw (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
    insert = "INSERT INTO bench_raw (body) VALUES (%s)"

    @contextlib.contextmanager
    def client() -> Iterator[Op]:
        with psycopg.connect(url, autocommit=False) as conn:
            cur = conn.cursor()

            def op(i: int) -> int | None:
                cur.execute(insert, (Jsonb(envelope_like(i)),))
                conn.commit()
                return None

            yield op

    with psycopg.connect(url, autocommit=True) as conn:
        setting = synchronous_commit(conn)
    yield client, setting


class BenchAgent(Aggregate):
    def __init__(
        self,
        name: str,
        description: str,
        provider: str,
        model: str,
        temperature: float,
        max_tokens: int,
        system_prompt: str,
        tools: list[str],
    ) -> None:
        self.name = name
        self.description = description
        self.provider = provider
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.tools = tools


class BenchApp(Application[uuid.UUID]):
    name = "BenchApp"


@contextlib.contextmanager
def stock_system(url: str) -> Iterator[tuple[Client, str]]:
    app = BenchApp(env=eventsourcing_env(url))
    try:

        def op(i: int) -> int | None:
            recordings = app.save(BenchAgent(**agent_fields(i)))
            return recordings[-1].notification.id

        @contextlib.contextmanager
        def client() -> Iterator[Op]:
            yield op

        with app.recorder.datastore.get_connection() as conn:
            setting = synchronous_commit(conn)
        yield client, setting
    finally:
        app.close()


@contextlib.contextmanager
def lightning_system(url: str, key: str) -> Iterator[tuple[Client, str]]:
    from lightning.bootstrap import Lightning
    from lightning.config import Settings
    from lightning.services import SYSTEM, Context

    migrate(url)
    app = Lightning.open(Settings(database_url=url, amqp_url=None, encryption_key=key))
    try:
        ctx = Context(SYSTEM)

        def op(i: int) -> int | None:
            result = app.agents.register(
                ctx, name=f"bench-{i}", provider="grok", model="grok-code-fast-1"
            )
            return result.position

        # The pool's sessions are the ones the appends commit on (the store's own session
        # sets nothing on this path; consumers and the relay turn it off for their own writes).
        rows = app.store.backend.query("SHOW synchronous_commit")
        yield (lambda: contextlib.nullcontext(op)), str(rows[0]["synchronous_commit"])
    finally:
        app.close()


# ---- measuring ----------------------------------------------------------------------------------


@dataclass
class Measured:
    """Per system and level, one Run per run; what each system stores per command."""

    runs: dict[str, dict[int, list[Run]]] = field(
        default_factory=lambda: {name: {} for name in SYSTEMS}
    )
    sizes: dict[str, int] = field(default_factory=dict)

    def rates(self, system: str, level: int) -> list[float]:
        return [r.rate for r in self.runs[system].get(level, [])]


def opened(
    args: argparse.Namespace, system: str, url: str
) -> contextlib.AbstractContextManager[tuple[Client, str]]:
    if system == "raw":
        return raw_system(url)
    if system == "stock":
        return stock_system(url)
    return lightning_system(url, args.key)


def one_run(args: argparse.Namespace, run: int, measured: Measured) -> None:
    """Fresh databases for every system, each level measured for each system in turn."""
    databases = Databases(args.postgres)
    try:
        with contextlib.ExitStack() as stack:
            clients: dict[str, Client] = {}
            index: dict[str, int] = {}
            urls: dict[str, str] = {}
            for system in args.systems:
                urls[system] = stack.enter_context(databases.fresh())
                client, setting = stack.enter_context(opened(args, system, urls[system]))
                if setting != "on":
                    raise SystemExit(f"{system}: synchronous_commit is {setting!r}, not 'on'")
                clients[system] = client
                index[system] = closed_loop(4, WARM_UP, 0, client).commands
            for level in args.concurrency:
                for system in args.systems:
                    got = closed_loop(level, args.commands, index[system], clients[system])
                    index[system] += got.commands
                    measured.runs[system].setdefault(level, []).append(got)
                    log(f"run {run + 1}  {system:<9}  c={level:<3} {got.rate:8.0f} cmd/s")
            if run == 0:
                measured.sizes = stored_sizes(urls)
    finally:
        databases.drop_all()


def stored_sizes(urls: dict[str, str]) -> dict[str, int]:
    queries = {
        "raw": "SELECT avg(pg_column_size(body))::int FROM bench_raw",
        "stock": "SELECT avg(length(state))::int FROM benchapp_events",
        "lightning": "SELECT avg(length(state))::int FROM stored_events",
    }
    return {name: int(scalar(url, queries[name]) or 0) for name, url in urls.items()}


def rows_of(args: argparse.Namespace, measured: Measured) -> list[Row]:
    rows = []
    for level in args.concurrency:
        ours = measured.rates("lightning", level)
        for baseline in ("raw", "stock"):
            if baseline not in args.systems or not ours:
                continue
            theirs = measured.rates(baseline, level)
            factor = TARGETS[baseline] if level == TARGET_LEVEL else None
            row = Row(
                name=f"registerAgent, {level} caller{'s' * (level != 1)}, vs {baseline}",
                unit="cmd/s",
                ours=median(ours),
                baseline=median(theirs),
                baseline_name=LABELS[baseline],
                target="" if factor is None else f">= {factor:g}x (stretch)",
                runs=ours,
                baseline_runs=theirs,
            )
            if factor is not None and row.ratio is not None:
                row.met = row.ratio >= factor
            rows.append(row)
    return rows


def report(args: argparse.Namespace, measured: Measured, described: dict[str, str]) -> list[Row]:
    rows = rows_of(args, measured)
    print_rows("append: registerAgent commands/s", rows, described, args.runs)
    print(f"  {'callers':>7} " + " ".join(f"{s + ' cmd/s':>16}" for s in args.systems))
    for level in args.concurrency:
        cells = [median(measured.rates(s, level)) for s in args.systems]
        print(f"  {level:>7} " + " ".join(f"{c:>16,.0f}" for c in cells))
    sizes = ", ".join(f"{name} ~{size} B" for name, size in measured.sizes.items())
    print(f"  stored per event (state/body): {sizes}; Lightning writes 2 events per command")
    print(
        f"  synchronous_commit {described['synchronous_commit']} in every system's session,"
        f" fsync {described['fsync']}"
    )
    return rows


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="registerAgent commands/s in-process against raw psycopg INSERT+COMMIT and "
        "stock eventsourcing, at several concurrencies (medians of --runs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=int, default=3, help="repetitions; medians are reported")
    add("--commands", type=int, default=2000, help="commands per system and level")
    add("--concurrency", default="1,8,64", help="comma-separated caller thread counts")
    add(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    add("--postgres", default=ADMIN_POSTGRES, help="admin URL; databases are created beside it")
    add("--out", type=Path, default=RESULTS, help="where append.json and append.png go")
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        parser.error("--concurrency takes comma-separated integers")
    args.systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    if not args.concurrency or min(args.runs, args.commands, *args.concurrency) < 1:
        parser.error("--runs, --commands and --concurrency must be positive")
    if not args.systems:
        parser.error("--systems takes " + ",".join(SYSTEMS))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from lightning.store.secrets import Keyring

    args = parse_args(argv)
    args.key = Keyring.generate("bench")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: databases dropped
    fsync = str(scalar(args.postgres, "SHOW fsync"))
    described = machine(
        database=postgres_version(args.postgres),
        synchronous_commit="on",  # checked in every system's session before it is measured
        fsync=fsync,
    )
    started, measured = time.perf_counter(), Measured()
    for run in range(args.runs):
        one_run(args, run, measured)
    rows = report(args, measured, described)
    options = {k: v for k, v in vars(args).items() if k != "key"}
    details = {"stored_bytes_per_event": measured.sizes, "events_per_command": {"lightning": 2}}
    path = write("append", rows, described, args.runs, options, details, args.out)
    print(f"total runtime: {time.perf_counter() - started:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
