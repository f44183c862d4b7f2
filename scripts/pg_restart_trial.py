"""How fast does Lightning come back after PostgreSQL restarts?

Runs ``lightning serve`` and ``lightning worker all`` (distributed mode, real processes) against
a fresh database and RabbitMQ, fills their connection pools with concurrent requests, keeps
commands arriving over HTTP, and restarts PostgreSQL (``pg_ctlcluster … restart``) several
times. For each restart it prints how long after PostgreSQL accepted connections again

* the server answered a command (``registerAgent`` over GraphQL), and
* every read model had applied everything the store held (tracking rows at the head).

    .venv/bin/python scripts/pg_restart_trial.py [--trials 5] [--pool-size 10]

It needs root (or the postgres user) for pg_ctlcluster. The database and the run's RabbitMQ
names are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "LIGHTNING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("LIGHTNING_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ENCRYPTION_KEY = os.environ.get("LIGHTNING_ENCRYPTION_KEY") or (
    "trial:" + base64.b64encode(os.urandom(32)).decode()
)
SECRET = "trial-admin"
REGISTER = (
    'mutation($n: String!) { registerAgent(input: {name: $n, provider: "grok",'
    ' model: "grok-code-fast-1"}) { position } }'
)


def cluster_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def restart_postgres() -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster_version(), "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def accepting(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Trial:
    def __init__(self, pool_size: int) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.db = f"lightning_restart_{self.run}"
        base = ADMIN_URL.rpartition("/")[0]
        self.url = f"{base}/{self.db}"
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")} | {
            "LIGHTNING_DATABASE_URL": self.url,
            "LIGHTNING_AMQP_URL": AMQP_URL,
            "LIGHTNING_ADMIN_SECRET": SECRET,
            "LIGHTNING_EXCHANGE": f"lightning.events.restart-{self.run}",
            "LIGHTNING_QUEUE_PREFIX": f"lightning-restart-{self.run}",
            "LIGHTNING_POSTGRES_POOL_SIZE": str(pool_size),
            "LIGHTNING_PORT": str(self.port),
            "LIGHTNING_ENCRYPTION_KEY": ENCRYPTION_KEY,
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sent = self.failed = 0
        self.stop = threading.Event()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {SECRET}"},
            timeout=10,
        )

    def start(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db}"')
        lightning = [sys.executable, "-m", "lightning.cli"]
        subprocess.run([*lightning, "db", "migrate"], env=self.env, check=True, capture_output=True)
        logs = Path(f"/tmp/pg-restart-{self.run}")
        logs.mkdir()
        for args in (["worker", "all"], ["serve"]):
            log = (logs / f"{args[0]}.log").open("wb")
            self.processes.append(
                subprocess.Popen([*lightning, *args], env=self.env, stdout=log, stderr=log)
            )
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):
                if self.client.get("/health/ready").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {logs}")
            time.sleep(0.1)
        print(f"logs in {logs}")

    def fill_pools(self, concurrency: int) -> None:
        """Concurrent commands and consistent reads, so every pool holds many connections."""

        def one(i: int) -> None:
            body = self.client.post(
                "/graphql", json={"query": REGISTER, "variables": {"n": f"warm-{i}"}}
            ).json()
            position = body["data"]["registerAgent"]["position"]
            query = (
                "query($p: Int) { agents(first: 1, consistentWith: $p) { edges { node { id } } } }"
            )
            self.client.post("/graphql", json={"query": query, "variables": {"p": position}})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def command(self, name: str) -> bool:
        try:
            body = self.client.post(
                "/graphql", json={"query": REGISTER, "variables": {"n": name}}
            ).json()
        except httpx.HTTPError:
            return False
        return bool(body.get("data"))

    def keep_writing(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self.sent += 1
            if not self.command(f"steady-{i}"):
                self.failed += 1
            time.sleep(0.02)

    def read_models_current(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1) as conn:
                head = conn.execute("SELECT max(notification_id) FROM stored_events").fetchone()
                rows = conn.execute(
                    "SELECT application_name, notification_id FROM consumer_tracking"
                    " WHERE application_name IN ('agents', 'api_keys', 'audit_log')"
                ).fetchall()
        except psycopg.Error:
            return False
        return head is not None and len(rows) == 3 and all(r[1] >= head[0] for r in rows)

    def one_restart(self, number: int) -> tuple[float, float]:
        restart = threading.Thread(target=restart_postgres)
        restart.start()
        time.sleep(0.05)
        while accepting(self.url):  # wait until it is really down ...
            time.sleep(0.01)
        while not accepting(self.url):  # ... and back
            time.sleep(0.01)
        back = time.monotonic()
        while not self.command(f"after-restart-{number}"):
            time.sleep(0.01)
        served = time.monotonic() - back
        while not self.read_models_current():
            time.sleep(0.01)
        current = time.monotonic() - back
        restart.join()  # pg_ctlcluster itself returns a while after the server is up
        return served, current

    def close(self) -> None:
        self.stop.set()
        for p in self.processes:
            p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.client.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        sys.path.insert(0, str(ROOT / "src"))
        import aio_pika

        from lightning.bus.rabbitmq import Topology

        async def delete() -> None:
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                env = self.env
                topology = Topology(env["LIGHTNING_EXCHANGE"], env["LIGHTNING_QUEUE_PREFIX"], 5)
                await topology.delete(connection, ("projections", "sagas", "webhooks"))

        asyncio.run(delete())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    trial = Trial(args.pool_size)
    try:
        trial.start()
        trial.fill_pools(concurrency=3 * args.pool_size)
        writer = threading.Thread(target=trial.keep_writing, daemon=True)
        writer.start()
        print(f"PostgreSQL {cluster_version()}, pool size {args.pool_size} per process")
        print("restart | command served after (s) | read models current after (s)")
        results = []
        for number in range(1, args.trials + 1):
            time.sleep(2)
            served, current = trial.one_restart(number)
            results.append(current)
            print(f"{number:7} | {served:25.2f} | {current:29.2f}")
        trial.stop.set()
        writer.join()
        print(
            f"read models current within {max(results):.2f} s of PostgreSQL accepting connections"
            f" (median {statistics.median(results):.2f} s) in {len(results)} of {len(results)}"
            f" restarts; {trial.sent} steady commands sent, {trial.failed} refused during outages"
        )
    finally:
        trial.close()


if __name__ == "__main__":
    main()
