"""The rebuild scenario: ``lightning projections rebuild --all`` over a long log, against the stock
``eventsourcing`` ProjectionRunner.

1. **Ours**: a fresh database holding --events events (default 1,000,000) of the platform's own
   kinds — agents registered (with their name reservations), reconfigured and retired, API keys
   issued and rotated, workflows created and edited. A template of a few hundred is made through
   the service layer (the real commands), then copied with every UUID in it renamed per copy
   and loaded with COPY, so the log is what the commands write, only longer. Then the real CLI,
   ``lightning projections rebuild --all``, in a process of its own: its wall time (all four read
   models — agents, api_keys, audit_log, workflows — from the whole log) and its peak RSS (the
   kernel's ``ru_maxrss`` of that process). Each run rebuilds the same log again (a rebuild
   empties the read models first).
2. **Baseline**: eventsourcing's own ``ProjectionRunner`` (its ``ApplicationSubscription`` of a
   stock ``Application`` on PostgreSQL) with one ``Projection`` whose view (a
   ``PostgresTrackingRecorder``, the documented pattern) writes, per event, the agent's row and
   an audit row with the tracking record in one transaction — two read models, where ours
   rebuilds four. Measured on --stock-events logs (100,000 and 200,000 events of stock
   aggregates: created, reconfigured twice, every third retired) and extrapolated linearly to
   --events: time(N) = t2 + (t2 - t1) * (N - n2) / (n2 - n1). Stock sessions keep PostgreSQL's
   default ``synchronous_commit = on`` (each event's transaction waits for the disk); ours write
   derived data with it off (DESIGN §1: read models are rebuilt from the log), which the table
   states.

Target: ours >= 25x the stock runner's events/s (stretch 50x), peak RSS < 200 MB. Medians of
--runs runs; each run's figures are in docs/bench/rebuild.json's ``details``.

    .venv/bin/python scripts/bench/rebuild.py [--runs 3] [--events 1000000]
        [--stock-events 100000,200000]

The defaults take about ten minutes on a 2-core machine (making the log is about a minute).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import psycopg
from common import (
    ADMIN_POSTGRES,
    RESULTS,
    ROOT,
    Databases,
    Row,
    eventsourcing_env,
    log,
    machine,
    median,
    migrate,
    postgres_version,
    print_rows,
    write,
)

TARGET = 25.0
STRETCH = 50.0
RSS_LIMIT_MB = 200.0
UUID_TEXT = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-([0-9a-f]{12})")


def encryption_key() -> str:
    from lightning.store.secrets import Keyring

    return os.environ.get("LIGHTNING_ENCRYPTION_KEY") or Keyring.generate("bench")


# ---- our log ------------------------------------------------------------------------------------


def make_template(url: str, key: str, agents: int = 120) -> list[tuple[uuid.UUID, int, str, bytes]]:
    """A few hundred events written by the real commands, in position order."""
    from lightning.bootstrap import Lightning
    from lightning.config import Settings
    from lightning.services import SYSTEM, Context

    ctx = Context(SYSTEM)
    app = Lightning.open(
        Settings(database_url=url, amqp_url=None, encryption_key=key, _env_file=None)
    )
    try:
        ids = []
        for k in range(agents):
            made = app.agents.register(
                ctx,
                name=f"rebuild-{k}",
                provider="grok",
                model="grok-code-fast-1",
                description="an agent of the rebuild benchmark",
                system_prompt="You review pull requests. " * 4,
                tools=["search", "read_file"],
            )
            agent = made.agent.id
            ids.append(agent)
            app.agents.reconfigure(ctx, agent, temperature=0.2 + (k % 5) / 10)
            app.agents.reconfigure(ctx, agent, model="grok-beta", max_tokens=2048)
            if k % 3 == 2:
                app.agents.retire(ctx, agent)
        for k in range(agents // 10):
            issued = app.api_keys.issue(ctx, name=f"ci-{k}", role="operator")
            app.api_keys.rotate(ctx, issued.key.id, grace_period_seconds=60)
        for k in range(agents // 10):
            graph = {
                "nodes": [
                    {"id": "a", "kind": "agent", "config": {"agentId": str(ids[k])}},
                    {"id": "review", "kind": "human_review", "config": {}},
                ],
                "edges": [{"source": "a", "target": "review"}],
            }
            workflow = app.workflows.create(ctx, name=f"wf-{k}", graph=graph).workflow.id
            app.workflows.update_draft(ctx, workflow, graph=graph)
    finally:
        app.close()
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events"
            " ORDER BY notification_id"
        ).fetchall()
    return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def renamed(value: bytes, suffix: bytes) -> bytes:
    """Every UUID in ``value`` with its last 12 hex digits replaced by ``suffix``: the same
    references between events, new identities (random UUIDs differ long before their tails)."""
    return UUID_TEXT.sub(lambda m: m.group(0)[:24] + suffix, value)


def load_log(url: str, template: Sequence[tuple[uuid.UUID, int, str, bytes]], total: int) -> int:
    """Copy the template (already stored: copy 0) until the log holds ``total`` events."""
    have = len(template)
    copy = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY stored_events (originator_id, originator_version, topic, state) FROM STDIN"
        ) as out:
            while have < total:
                copy += 1
                suffix = f"{copy:012x}".encode()
                for originator, version, topic, state in template[: total - have]:
                    oid = uuid.UUID(str(originator)[:24] + suffix.decode())
                    out.write_row((oid, version, topic, renamed(state, suffix)))
                have += min(len(template), total - have)
                if copy % 500 == 0:
                    log(f"  log: {have:,} events ({time.perf_counter() - started:.0f} s)")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE stored_events")
        head = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
    assert head is not None
    return int(head[0])


@dataclass
class Ours:
    seconds: float
    rss_mb: float
    position: int
    output: str


def rebuild_all(url: str, key: str, batch: int | None) -> Ours:
    """``lightning projections rebuild --all`` in a process of its own: wall time, peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")} | {
        "LIGHTNING_DATABASE_URL": url,
        "LIGHTNING_ENCRYPTION_KEY": key,
        "COLUMNS": "120",
    }
    argv = [str(ROOT / ".venv" / "bin" / "lightning"), "projections", "rebuild", "--all"]
    if not Path(argv[0]).exists():
        argv[0:1] = [sys.executable, "-m", "lightning.cli"]
    if batch is not None:
        argv += ["--batch", str(batch)]
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS, not the sum
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"rebuild failed ({proc.returncode}): {text[-2000:]}")
    found = re.search(r"up to position (\d+)", text)
    return Ours(seconds, usage.ru_maxrss / 1024, int(found.group(1)) if found else -1, text[-300:])


def check_rebuilt(url: str, head: int) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        positions = dict(
            conn.execute(
                "SELECT application_name, notification_id FROM consumer_tracking"
                " WHERE application_name IN ('agents', 'api_keys', 'audit_log', 'workflows')"
            ).fetchall()
        )
        audited = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        parked = conn.execute("SELECT count(*) FROM parked_events").fetchone()
    assert audited is not None and parked is not None
    if set(positions.values()) != {head} or len(positions) != 4:
        raise RuntimeError(f"not every read model reached {head}: {positions}")
    if int(parked[0]):
        raise RuntimeError(f"{parked[0]} events parked during the rebuild")
    return {"audit_rows": int(audited[0]), **positions}


# ---- the stock runner ---------------------------------------------------------------------------


def stock_classes() -> tuple[type[Any], type[Any], type[Any], type[Any]]:
    """The stock application, aggregate, view and projection (imported only when used)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection

    class StockAgent(Aggregate):
        @event("Registered")
        def __init__(self, name: str, provider: str, model: str, system_prompt: str) -> None:
            self.name, self.provider, self.model = name, provider, model
            self.system_prompt = system_prompt
            self.temperature = 0.7
            self.status = "ACTIVE"

        @event("Reconfigured")
        def reconfigure(self, model: str, temperature: float) -> None:
            self.model, self.temperature = model, temperature

        @event("Retired")
        def retire(self) -> None:
            self.status = "RETIRED"

    class StockApp(Application[uuid.UUID]):
        name = "StockApp"

    class StockView(PostgresTrackingRecorder):
        """Two read models, written with the tracking record in one transaction per event."""

        def create_table(self) -> None:
            super().create_table()
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    "CREATE TABLE IF NOT EXISTS stock_agents (id uuid PRIMARY KEY, name text,"
                    " provider text, model text, temperature double precision, status text,"
                    " version bigint, updated_at timestamptz)"
                )
                curs.execute(
                    "CREATE TABLE IF NOT EXISTS stock_audit (position bigint PRIMARY KEY,"
                    " aggregate_id uuid, type text, at timestamptz, data jsonb)"
                )

        def write(self, fields: dict[str, Any], audit: dict[str, Any], tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as curs:
                columns = ", ".join(fields)
                values = ", ".join(["%s"] * len(fields))
                updates = ", ".join(f"{c} = excluded.{c}" for c in fields if c != "id")
                curs.execute(
                    f"INSERT INTO stock_agents ({columns}) VALUES ({values})"  # type: ignore[arg-type]
                    f" ON CONFLICT (id) DO UPDATE SET {updates}",
                    list(fields.values()),
                )
                curs.execute(
                    "INSERT INTO stock_audit VALUES (%s, %s, %s, %s, %s)",
                    (
                        tracking.notification_id,
                        audit["aggregate_id"],
                        audit["type"],
                        audit["at"],
                        json.dumps(audit["data"]),
                    ),
                )
                self._insert_tracking(curs, tracking)

    class StockProjection(Projection[StockView]):
        name = "stockprojection"

        @singledispatchmethod
        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_tracking(tracking)

        @process_event.register(StockAgent.Registered)
        def _(self, domain_event: Any, tracking: Tracking) -> None:
            self._write(domain_event, tracking, name=domain_event.name, status="ACTIVE")

        @process_event.register(StockAgent.Reconfigured)
        def _(self, domain_event: Any, tracking: Tracking) -> None:
            self._write(domain_event, tracking, model=domain_event.model)

        @process_event.register(StockAgent.Retired)
        def _(self, domain_event: Any, tracking: Tracking) -> None:
            self._write(domain_event, tracking, status="RETIRED")

        def _write(self, domain_event: Any, tracking: Tracking, **fields: Any) -> None:
            row = {
                "id": domain_event.originator_id,
                "version": domain_event.originator_version,
                "updated_at": domain_event.timestamp,
                **fields,
            }
            data = {k: v for k, v in domain_event.__dict__.items() if k != "timestamp"}
            audit = {
                "aggregate_id": domain_event.originator_id,
                "type": type(domain_event).__qualname__,
                "at": domain_event.timestamp,
                "data": {k: str(v) for k, v in data.items()},
            }
            self.view.write(row, audit, tracking)

    return StockApp, StockAgent, StockView, StockProjection


def stock_child(url: str, events: int) -> None:
    """In its own process (``--stock-child``): write ``events`` stock events, then time the
    stock ProjectionRunner from its start until its view has tracked the last one."""
    from eventsourcing.projection import ProjectionRunner

    stock_app, stock_agent, stock_view, stock_projection = stock_classes()
    env = eventsourcing_env(url)
    app = stock_app(env=env)
    written = 0
    k = 0
    while written < events:
        batch = []
        for _ in range(250):
            agent = stock_agent(
                name=f"stock-{k}", provider="grok", model="grok-code-fast-1",
                system_prompt="You review pull requests. " * 4,
            )  # fmt: skip
            agent.reconfigure(model="grok-beta", temperature=0.2)
            agent.reconfigure(model="grok-code-fast-1", temperature=0.5)
            if k % 3 == 2:
                agent.retire()
            batch.append(agent)
            k += 1
        recordings = app.save(*batch)
        written = recordings[-1].notification.id
    head = app.recorder.max_notification_id() or 0
    app.close()
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=stock_app,
        projection_class=stock_projection,
        view_class=stock_view,
        env=env,
    ) as runner:
        runner.wait(head, timeout=3600)
        seconds = time.perf_counter() - started
    print(json.dumps({"events": head, "seconds": seconds}))


def stock_run(databases: Databases, events: int) -> tuple[int, float]:
    with databases.fresh() as url:
        done = subprocess.run(
            [sys.executable, __file__, "--stock-child", url, str(events)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise RuntimeError(f"stock runner failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["events"]), float(result["seconds"])


def extrapolated(points: Sequence[tuple[int, float]], events: int) -> float:
    """Seconds for ``events`` from the two largest measured (events, seconds), linearly."""
    (n1, t1), (n2, t2) = sorted(points)[-2:]
    return t2 + (t2 - t1) * (events - n2) / (n2 - n1)


# ---- main ---------------------------------------------------------------------------------------


@dataclass
class Measured:
    ours: list[Ours] = field(default_factory=list)
    stock: list[list[tuple[int, float]]] = field(default_factory=list)  # per run: (n, s) pairs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="projections rebuild --all against the stock eventsourcing ProjectionRunner.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--runs", type=int, default=3, help="repetitions; medians are reported")
    add("--events", type=int, default=1_000_000, help="events in our log")
    add("--stock-events", default="100000,200000", help="two stock log sizes to extrapolate from")
    add("--batch", type=int, default=None, help="rebuild --batch (the CLI's default if not given)")
    add("--postgres", default=ADMIN_POSTGRES, help="admin URL; databases are created beside it")
    add("--out", type=Path, default=RESULTS, help="where rebuild.json and rebuild.png go")
    add("--stock-child", nargs=2, metavar=("URL", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stock_child:
        return args
    try:
        args.stock_events = sorted(int(x) for x in args.stock_events.split(",") if x.strip())
    except ValueError:
        parser.error("--stock-events takes two comma-separated integers")
    if len(args.stock_events) != 2 or args.stock_events[0] == args.stock_events[1]:
        parser.error("--stock-events takes two different sizes")
    if min(args.runs, args.events, *args.stock_events) < 1:
        parser.error("--runs, --events and --stock-events must be positive")
    return args


def report(args: argparse.Namespace, measured: Measured, described: dict[str, str]) -> list[Row]:
    ours_rates = [args.events / o.seconds for o in measured.ours]
    stock_rates = [args.events / extrapolated(points, args.events) for points in measured.stock]
    rss = [o.rss_mb for o in measured.ours]
    rate = Row(
        name=f"rebuild --all (4 read models), {args.events:,} events",
        unit="events/s",
        ours=median(ours_rates),
        baseline=median(stock_rates),
        baseline_name=(
            "stock eventsourcing ProjectionRunner, 2 read models, one transaction per event"
            f" (synchronous_commit on), measured on {args.stock_events[0]:,} and"
            f" {args.stock_events[1]:,} events, extrapolated to {args.events:,}"
        ),
        target=f">= {TARGET:g}x (stretch {STRETCH:g}x)",
        runs=ours_rates,
        baseline_runs=stock_rates,
    )
    rate.met = rate.ratio is not None and rate.ratio >= TARGET
    peak = Row(
        name="rebuild --all peak RSS",
        unit="MB",
        ours=median(rss),
        higher_is_better=False,
        target=f"< {RSS_LIMIT_MB:g} MB",
        met=median(rss) < RSS_LIMIT_MB,
        runs=rss,
    )
    rows = [rate, peak]
    print_rows("rebuild: all read models from the whole log", rows, described, args.runs)
    seconds = [o.seconds for o in measured.ours]
    each = ", ".join(f"{s:.1f}" for s in seconds)
    print(f"  ours: {median(seconds):.1f} s per rebuild (runs: {each})")
    for points in measured.stock:
        text = ", ".join(f"{n:,} events in {s:.1f} s ({n / s:,.0f}/s)" for n, s in points)
        print(f"  stock: {text}; {extrapolated(points, args.events):.0f} s for {args.events:,}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stock_child:
        stock_child(args.stock_child[0], int(args.stock_child[1]))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: databases dropped
    described = machine(database=postgres_version(args.postgres))
    key = encryption_key()
    databases = Databases(args.postgres)
    measured = Measured()
    started = time.perf_counter()
    details: dict[str, Any] = {}
    try:
        url = databases.create()
        migrate(url)
        log("making the log: a template through the commands, then copies of it")
        template = make_template(url, key)
        head = load_log(url, template, args.events)
        details |= {"events": head, "template_events": len(template)}
        log(f"  log: {head:,} events in {time.perf_counter() - started:.0f} s")
        for run in range(args.runs):
            ours = rebuild_all(url, key, args.batch)
            counts = check_rebuilt(url, head)
            measured.ours.append(ours)
            log(
                f"run {run + 1}: ours {ours.seconds:.1f} s ({head / ours.seconds:,.0f} events/s),"
                f" peak RSS {ours.rss_mb:.0f} MB; {counts['audit_rows']:,} audit rows"
            )
            points = [stock_run(databases, n) for n in args.stock_events]
            measured.stock.append(points)
            log(f"run {run + 1}: stock " + ", ".join(f"{n:,} in {s:.1f} s" for n, s in points))
        details |= {
            "ours": [vars(o) for o in measured.ours],
            "stock": measured.stock,
            "our_synchronous_commit": "off (derived data)",
            "stock_synchronous_commit": "on (PostgreSQL's default)",
        }
    finally:
        databases.drop_all()
    rows = report(args, measured, described)
    options = {k: v for k, v in vars(args).items() if k != "stock_child"}
    path = write("rebuild", rows, described, args.runs, options, details, args.out)
    print(f"total runtime: {time.perf_counter() - started:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
