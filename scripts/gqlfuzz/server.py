"""``lightning serve`` in embedded mode on a free port, for a run without ``--url``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def embedded_server(workdir: Path, admin: str) -> Iterator[str]:
    """``lightning serve`` on a free port with a fresh SQLite database in ``workdir``."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNING_")} | {
        "LIGHTNING_DATABASE_URL": f"sqlite:///{workdir}/lightning.db",
        "LIGHTNING_ADMIN_SECRET": admin,
        "LIGHTNING_HOST": "127.0.0.1",
        "LIGHTNING_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lightning.cli", "serve"],
            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _wait_ready(base, process, workdir / "serve.log")
            yield f"{base}/graphql"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start:\n{log.read_text()}")
        time.sleep(0.1)
