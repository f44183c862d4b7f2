"""The api scenario's servers (``api.py``): ``lightning worker all``, ``lightning serve`` and the
plain app (``plain_app.py``) under uvicorn, on one fresh database and a per-run RabbitMQ exchange
and queue prefix (``LIGHTNING_EXCHANGE``, ``LIGHTNING_QUEUE_PREFIX``), with a random admin secret
and encryption key; and what the scenario asks of Lightning over HTTP: an operator key, and
whether the read models have caught up."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from common import ROOT, log

HERE = Path(__file__).resolve().parent
SETTLE_TIMEOUT_S = 180.0


# ---- the processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_takes_workers() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "lightning.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"},
    )
    return "--workers" in done.stdout


@dataclass
class Servers:
    """``worker all``, ``serve`` and the plain app, on one database and a unique exchange and
    queue prefix; their output goes to log files in ``workdir``."""

    workdir: Path
    database_url: str
    amqp_url: str
    workers: int
    pass_workers: bool
    run_id: str = field(default_factory=lambda: secrets.token_hex(5))
    admin_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    encryption_key: str = field(
        default_factory=lambda: "bench:" + base64.b64encode(os.urandom(32)).decode()
    )
    lightning_port: int = field(default_factory=free_port)
    plain_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_files: list[TextIO] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"lightning.events.bench-{self.run_id}"

    @property
    def queue_prefix(self) -> str:
        return f"lightning-bench-{self.run_id}"

    @property
    def lightning(self) -> str:
        return f"http://127.0.0.1:{self.lightning_port}"

    @property
    def plain(self) -> str:
        return f"http://127.0.0.1:{self.plain_port}"

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("LIGHTNING_", "BENCH_"))}
        return base | {
            "LIGHTNING_DATABASE_URL": self.database_url,
            "LIGHTNING_AMQP_URL": self.amqp_url,
            "LIGHTNING_EXCHANGE": self.exchange,
            "LIGHTNING_QUEUE_PREFIX": self.queue_prefix,
            "LIGHTNING_ENCRYPTION_KEY": self.encryption_key,
            "LIGHTNING_ADMIN_SECRET": self.admin_secret,
            "BENCH_PLAIN_DATABASE_URL": self.database_url,
        }

    def lightning_cli(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "lightning.cli", *argv]

    def migrate(self) -> None:
        subprocess.run(
            self.lightning_cli("db", "migrate"), env=self.env(), check=True, capture_output=True
        )

    def start(self, name: str, argv: list[str]) -> None:
        log_file = (self.workdir / f"{name}.log").open("w")
        self.log_files.append(log_file)
        self.processes[name] = subprocess.Popen(
            argv, env=self.env(), cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT
        )

    def start_all(self) -> None:
        many = ["--workers", str(self.workers)] if self.workers > 1 else []
        self.start("worker", self.lightning_cli("worker", "all"))
        serve = self.lightning_cli("serve", "--port", str(self.lightning_port))
        self.start("serve", serve + (many if self.pass_workers else []))
        # As ``lightning serve`` runs by default: no access log.
        plain = [sys.executable, "-m", "uvicorn", "plain_app:create_app", "--factory"]
        plain += ["--no-access-log"]
        plain += ["--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(self.plain_port)]
        self.start("plain", plain + many)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(self.workdir.glob("*.log"))
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for url in (f"{self.lightning}/health/ready", f"{self.plain}/health"):
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not ready after {timeout:.0f} s\n{self.logs()}")
                time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} ({process.pid}) ignored SIGTERM; killing it")
                process.kill()
                process.wait()
        for log_file in self.log_files:
            log_file.close()

    async def delete_topology(self) -> None:
        import aio_pika

        from lightning.bus.rabbitmq import Topology
        from lightning.config import Settings

        settings = Settings(
            database_url=self.database_url,
            amqp_url=self.amqp_url,
            exchange=self.exchange,
            queue_prefix=self.queue_prefix,
        )
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            await Topology.from_settings(settings).delete(
                connection, ("projections", "sagas", "webhooks")
            )


# ---- talking to Lightning -----------------------------------------------------------------------


def graphql(base: str, token: str, query: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"{query[:60]}...: HTTP {response.status_code} {body}")
    data: dict[str, Any] = body["data"]
    return data


def operator_key(servers: Servers) -> str:
    """An API key of role operator, issued with the admin secret; checked before it is used."""
    issued = graphql(
        servers.lightning,
        servers.admin_secret,
        'mutation { issueApiKey(input: {name: "bench-operator", role: "operator"})'
        " { secret apiKey { role } } }",
    )["issueApiKey"]
    assert issued["apiKey"]["role"] == "operator", issued
    key: str = issued["secret"]
    graphql(
        servers.lightning,
        key,
        f'mutation {{ registerAgent(input: {{name: "bench-check-{servers.run_id}",'
        ' provider: "grok", model: "grok-code-fast-1", temperature: 0.2}) { position } }',
    )
    return key


def settle(servers: Servers, timeout: float = SETTLE_TIMEOUT_S) -> float:
    """Wait until every consumer has applied the store's head; return the seconds it took."""
    started = time.monotonic()
    while True:
        servers.check_alive()
        with contextlib.suppress(httpx.HTTPError, ValueError):
            body = httpx.get(f"{servers.lightning}/health/ready", timeout=5).json()
            lags = [c["lag"] for c in body.get("consumers", {}).values()]
            if lags and not any(lags):
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"read models not caught up after {timeout:.0f} s\n{servers.logs()}")
        time.sleep(0.1)
