"""What every scenario of the bench suite shares: the machine's description, medians and
percentiles, and one result format — ``docs/bench/<scenario>.json`` plus a PNG chart beside it —
from which ``scripts/bench/run.py`` writes the README's table.

A scenario's result is a list of rows; each row is one figure of ours against the baseline
measured in the same run::

    Row(name="registerAgent, 64 connections", unit="req/s", ours=1234.0,
        baseline=2216.0, baseline_name="plain litestar INSERT+COMMIT",
        higher_is_better=True, target=">= 0.5x")

``ratio`` is ours / baseline (for figures where lower is better, such as latencies, the row says
so and the ratio is still ours / baseline). A row may have no baseline (a latency against a
fixed target): then ``baseline`` is None and ``target`` says what it is held to.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "bench"
ADMIN_POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP = os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
INSTALL_HINT = ".venv/bin/pip install -e '.[bench]'"
QUICK_ENV = "BENCH_QUICK"  # set by run.py --quick: write() marks the results as a quick check


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def machine(**more: str) -> dict[str, str]:
    """Cores, platform, versions, load at start and the commit measured."""
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout.strip()
    described = {
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "load_at_start": "/".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": commit or "?",
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    for package in ("eventsourcing", "psycopg", "aio-pika", "litestar", "strawberry-graphql"):
        described[package] = _version(package)
    return described | more


def postgres_version(url: str = ADMIN_POSTGRES) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return f"PostgreSQL {conn.info.parameter_status('server_version')}"


@dataclass
class Row:
    name: str
    unit: str
    ours: float
    baseline: float | None = None
    baseline_name: str = ""
    higher_is_better: bool = True
    target: str = ""  # e.g. ">= 0.5x" (a ratio) or "<= 50 ms" (an absolute figure)
    met: bool | None = None  # whether the target is met (None: no target)
    runs: list[float] = field(default_factory=list)  # ours, per run (the median is ``ours``)
    baseline_runs: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline or math.isnan(self.baseline):
            return None
        return self.ours / self.baseline


def row_line(row: Row) -> str:
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    baseline = "" if row.baseline is None else f"{row.baseline:,.1f}"
    verdict = "" if row.met is None else ("MET" if row.met else "NOT MET")
    return (
        f"  {row.name:<52} {row.ours:>10,.1f} {row.unit:<6} {baseline:>10} {ratio:>7}"
        f"  {row.target} {verdict}".rstrip()
    )


def print_rows(title: str, rows: Sequence[Row], described: dict[str, str], runs: int) -> None:
    print(f"{title}: medians of {runs} run(s)")
    print(
        f"  machine: {described.get('cpus')} CPUs, {described.get('platform')}, Python"
        f" {described.get('python')}, {described.get('database', '')}; commit"
        f" {described.get('commit')}; load at start {described.get('load_at_start')}"
    )
    print(f"  {'figure':<52} {'ours':>10} {'unit':<6} {'baseline':>10} {'ratio':>7}  target")
    for row in rows:
        print(row_line(row))
        if row.baseline_name:
            print(f"  {'':<52} baseline: {row.baseline_name}")


# ---- fresh databases ----------------------------------------------------------------------------


def database_url(admin_url: str, dbname: str) -> str:
    return urlsplit(admin_url)._replace(path="/" + dbname).geturl()


class Databases:
    """Creates fresh ``lightning_bench_<random>`` databases and drops every one of them: call
    ``drop_all`` in a ``finally`` (``fresh`` drops its own on the way out as well)."""

    def __init__(self, admin_url: str = ADMIN_POSTGRES) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self) -> str:
        import psycopg
        from psycopg import sql

        name = f"lightning_bench_{secrets.token_hex(6)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return database_url(self.admin_url, name)

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        url = self.create()
        try:
            yield url
        finally:
            self.drop(urlsplit(url).path.lstrip("/"))

    def drop(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(drop)
        except psycopg.Error as exc:
            log(f"could not drop database {name}: {exc}")
            return
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in reversed(list(self.created)):
            self.drop(name)


def scalar(url: str, query: LiteralString) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def migrate(url: str) -> None:
    """``lightning db migrate`` on a fresh database."""
    from lightning.store.backends import open_backend
    from lightning.store.migrations import Migrator

    backend = open_backend(url)
    try:
        Migrator(backend).migrate()
    finally:
        backend.close()


def eventsourcing_env(url: str) -> dict[str, str]:
    """The environment of a stock eventsourcing application on the PostgreSQL database ``url``."""
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "CREATE_TABLE": "y",
    }


# ---- closed-loop load ---------------------------------------------------------------------------

# One command: takes a unique index, returns the position it was stored at (None if none).
Op = Callable[[int], int | None]
# Opens what one caller thread needs (a connection, say) and yields its Op.
Client = Callable[[], AbstractContextManager[Op]]


@dataclass
class Run:
    """One measured batch of commands: wall time and (return time, position) per command."""

    commands: int
    seconds: float
    returns: list[tuple[float, int | None]]
    lags_ms: list[float] = field(default_factory=list)
    drain_ms: float = math.nan  # last command returned -> read model caught up with it
    applied_per_s: float = math.nan  # read model's events/s from the run's first to last event

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else math.nan


def closed_loop(concurrency: int, commands: int, first: int, client: Client) -> Run:
    """``concurrency`` threads issue commands ``first .. first+commands-1`` back to back; the
    time runs from a common start barrier (every caller connected) to the last return."""
    barrier = threading.Barrier(concurrency + 1)
    returns: list[list[tuple[float, int | None]]] = [[] for _ in range(concurrency)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            with client() as op:
                barrier.wait()
                mine = returns[k]
                for i in range(first + k, first + commands, concurrency):
                    position = op(i)
                    mine.append((time.perf_counter(), position))
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=work, args=(k,), name=f"client-{k}", daemon=True)
        for k in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    end = time.perf_counter()
    if errors:
        raise errors[0]
    flat = [r for rs in returns for r in rs]
    return Run(commands=len(flat), seconds=end - start, returns=flat)


# ---- results ------------------------------------------------------------------------------------


def write(
    scenario: str,
    rows: Sequence[Row],
    described: dict[str, str],
    runs: int,
    options: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    directory: Path = RESULTS,
) -> Path:
    """Write ``<scenario>.json`` and ``<scenario>.png`` (ours against the baseline, per row)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{scenario}.json"
    document = {
        "scenario": scenario,
        "machine": described,
        "runs": runs,
        "options": options or {},
        "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
        "details": details or {},
        "quick": bool(os.environ.get(QUICK_ENV)),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    try:
        chart(scenario, rows, described, directory / f"{scenario}.png")
    except ImportError:  # the figures are in the JSON; the chart waits for the bench extra
        log(f"no chart for {scenario}: matplotlib is missing ({INSTALL_HINT})")
    return path


def chart(scenario: str, rows: Sequence[Row], described: dict[str, str], path: Path) -> None:
    """One horizontal bar pair per row (ours, baseline), grouped by unit; none without rows
    (``append.py --systems lightning`` measures no ratio)."""
    if not rows:
        log(f"no chart for {scenario}: no figures to compare")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(r.unit for r in rows))
    fig, axes = plt.subplots(
        len(units),
        1,
        figsize=(9, 1.2 + 0.75 * len(rows) + 0.6 * len(units)),
        squeeze=False,
    )
    for ax, unit in zip(axes[:, 0], units, strict=True):
        group = [r for r in rows if r.unit == unit]
        labels = [r.name for r in group]
        y = list(range(len(group)))
        ours = [r.ours for r in group]
        base = [r.baseline if r.baseline is not None else 0.0 for r in group]
        ax.barh([i + 0.2 for i in y], ours, height=0.38, label="Lightning", color="#3b6fd1")
        if any(r.baseline is not None for r in group):
            ax.barh([i - 0.2 for i in y], base, height=0.38, label="baseline", color="#b0b0b0")
        for i, r in enumerate(group):
            text = f"{r.ours:,.1f}" + ("" if r.ratio is None else f"  ({r.ratio:.2f}x)")
            ax.text(r.ours, i + 0.2, " " + text, va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.legend(fontsize=8, loc="lower right")
        ax.margins(x=0.25)
    fig.suptitle(
        f"{scenario}: medians; {described.get('cpus')} CPUs, commit {described.get('commit')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
