"""A throw-away Lightning server for the operator scripts (``hostile_load.py``, ``soak.py``).

* ``embedded()``: ``lightning serve`` on a free port with a fresh SQLite database and the
  in-process bus in a temporary directory.
* ``distributed()``: a fresh PostgreSQL database (``lightning_<tag>_<random>``), ``lightning db
  migrate``, then ``lightning worker all`` and ``lightning serve`` on a free port, on RabbitMQ under
  an exchange and queue prefix of their own (``LIGHTNING_EXCHANGE``, ``LIGHTNING_QUEUE_PREFIX``).

Both yield a ``Server`` once ``/health/ready`` answers 200, and remove everything on the way out:
processes stopped (SIGTERM, then SIGKILL), database dropped, queues and exchanges deleted,
temporary directory removed (the logs too, unless ``keep`` is true). Before that, the lines of the
logs that look like trouble (``ERROR``, ``CRITICAL``, tracebacks) are kept in ``Server.problems``
so the caller can print them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ADMIN_URL = os.environ.get(
    "LIGHTNING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("LIGHTNING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
# Consumer kinds whose queues a worker may declare; deleting one that was never declared is a
# no-op on RabbitMQ.
CONSUMER_KINDS = ("projections", "sagas", "webhooks")
_TROUBLE = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback \(most recent call last\)")
LIGHTNING = [sys.executable, "-m", "lightning.cli"]
# One encryption key for every process of a stack (distributed mode refuses to start without).
ENCRYPTION_KEY = os.environ.get("LIGHTNING_ENCRYPTION_KEY") or (
    "stack:" + base64.b64encode(secrets.token_bytes(32)).decode()
)


@dataclass
class Server:
    url: str  # http://host:port, without /graphql
    token: str  # the admin secret
    pid: int | None  # the ``lightning serve`` process, for its RSS
    workdir: Path | None = None
    logs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Distributed: each ``lightning worker`` process by its arguments ("relay projections"), and
    # what starts it again (``restart``).
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    start_worker: Callable[[str], subprocess.Popen[bytes]] | None = None

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker, as ``kill -9`` would."""
        process = self.workers[name]
        process.kill()
        process.wait(timeout=15)

    def restart(self, name: str) -> None:
        assert self.start_worker is not None, "only a distributed server has workers"
        self.workers[name] = self.start_worker(name)

    @property
    def graphql(self) -> str:
        return f"{self.url}/graphql"

    @property
    def websocket(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/graphql"


def attached(url: str, token: str, pid: int | None = None) -> Server:
    """A server someone else runs; ``url`` may end in ``/graphql``."""
    return Server(url.rstrip("/").removesuffix("/graphql"), token, pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """The process's resident set (``VmRSS`` of /proc/<pid>/status; ``VmHWM``: its peak), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    """The machine's load: other work on it skews every latency and rate the scripts measure."""
    one, five = Path("/proc/loadavg").read_text().split()[:2]
    return f"load average {one} (1 min), {five} (5 min) on {os.cpu_count()} CPUs"


def problems(paths: list[Path], limit: int = 40) -> list[str]:
    """Log lines that look like trouble, prefixed with the log's name."""
    found: list[str] = []
    for path in paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if _TROUBLE.search(line):
                    found.append(f"{path.name}: {line.strip()[:300]}")
    return found[:limit] + ([f"… {len(found) - limit} more"] if len(found) > limit else [])


def _base_env(port: int, token: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")} | {
        "LIGHTNING_ADMIN_SECRET": token,
        "LIGHTNING_HOST": "127.0.0.1",
        "LIGHTNING_PORT": str(port),
        "LIGHTNING_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }


def _start(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*LIGHTNING, *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(url: str, processes: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            text = "\n".join(f"--- {log}\n{log.read_text(errors='replace')}" for log in logs)
            raise RuntimeError(f"the server did not become ready:\n{text[-5000:]}")
        time.sleep(0.1)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def embedded(tag: str, keep: bool = False) -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix=f"lightning-{tag}-"))
    port, token = free_port(), secrets.token_urlsafe(24)
    env = _base_env(port, token) | {"LIGHTNING_DATABASE_URL": f"sqlite:///{workdir}/{tag}.db"}
    logs = [workdir / "serve.log"]
    process = _start(["serve"], env, workdir, logs[0])
    server = Server(f"http://127.0.0.1:{port}", token, process.pid, workdir, logs)
    try:
        _wait_ready(server.url, [process], logs)
        yield server
    finally:
        _stop([process])
        server.problems = problems(logs)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def distributed(
    tag: str, keep: bool = False, workers: Sequence[str] = ("all",)
) -> Iterator[Server]:
    """``workers``: the ``lightning worker`` processes to run, each by its arguments
    (``"relay projections"``, ``"sagas"``); by default one ``worker all``."""
    import psycopg

    run = secrets.token_hex(4)
    database = f"lightning_{tag}_{run}"
    workdir = Path(tempfile.mkdtemp(prefix=f"lightning-{tag}-"))
    port, token = free_port(), secrets.token_urlsafe(24)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = _base_env(port, token) | {
        "LIGHTNING_DATABASE_URL": f"{ADMIN_URL.rpartition('/')[0]}/{database}",
        "LIGHTNING_AMQP_URL": AMQP_URL,
        "LIGHTNING_EXCHANGE": f"lightning.events.{tag}-{run}",
        "LIGHTNING_QUEUE_PREFIX": f"lightning-{tag}-{run}",
        "LIGHTNING_ENCRYPTION_KEY": f"k1:{key}",
    }
    logs = [workdir / "serve.log"]
    server = Server(f"http://127.0.0.1:{port}", token, None, workdir, logs)
    processes: list[subprocess.Popen[bytes]] = []

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        log = workdir / f"worker-{name.replace(' ', '-')}-{len(logs)}.log"
        logs.append(log)
        process = _start(["worker", *name.split()], env, workdir, log)
        processes.append(process)
        return process

    server.start_worker = start_worker
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
        migrate = subprocess.run(
            [*LIGHTNING, "db", "migrate"], env=env, cwd=workdir, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"lightning db migrate failed:\n{migrate.stdout}{migrate.stderr}")
        for name in workers:
            server.workers[name] = start_worker(name)
        serve = _start(["serve"], env, workdir, logs[0])
        processes.append(serve)
        server.pid = serve.pid
        _wait_ready(server.url, [serve, *server.workers.values()], logs)
        yield server
    finally:
        _stop(processes)
        server.problems = problems(logs)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        asyncio.run(_delete_topology(env["LIGHTNING_EXCHANGE"], env["LIGHTNING_QUEUE_PREFIX"]))
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]


async def _delete_topology(exchange: str, prefix: str) -> None:
    import aio_pika

    queues = [f"{prefix}.{kind}{suffix}" for kind in CONSUMER_KINDS for suffix in ("", ".dead")]
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for name, is_queue in [(q, True) for q in queues] + [
            (exchange, False),
            (f"{exchange}.dead-letter", False),
        ]:
            # A broker error closes its channel: one channel per deletion.
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                async with await connection.channel() as channel:
                    if is_queue:
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
