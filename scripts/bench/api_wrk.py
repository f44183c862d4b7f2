"""wrk for the api scenario: one run of a Lua script of this directory, its output parsed.

The scripts (``register.lua``, ``register_unique.lua``, ``agents.lua``, sharing
``wrk_counts.lua``) POST JSON with a bearer key and count the responses that are not a success:
a non-2xx status, or a 2xx body with GraphQL ``errors``. Such responses, and wrk's socket
errors (connect, read, write, timeout), make a run one *with errors*: its rate counts only the
good responses, and the scenario reports it as failed rather than as throughput.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREADS = 2  # wrk's own threads: it runs on the cores it measures, and competes for them
TIMEOUT_S = 10  # wrk's per-request timeout (its default, 2 s, would cut a slow run short)

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_COUNTS = re.compile(r"bench-counts responses=(\d+) non2xx=(\d+) graphql_errors=(\d+)")
_SAMPLE = re.compile(r"^bench-sample (.*)$", re.MULTILINE)


@dataclass
class WrkRun:
    requests: int  # complete responses
    seconds: float
    wrk_rate: float  # wrk's Requests/sec: every complete response, good or not
    p50_ms: float
    p99_ms: float
    non2xx: int = 0
    graphql_errors: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    sample: str = ""  # the first failed response's status and body

    @property
    def errors(self) -> int:
        return self.non2xx + self.graphql_errors + sum(self.socket_errors.values())

    @property
    def rate(self) -> float:
        """Good responses per second."""
        good = self.requests - self.non2xx - self.graphql_errors
        return good / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        text = f"{self.rate:8.1f} req/s, p50 {self.p50_ms:7.1f} ms, p99 {self.p99_ms:7.1f} ms"
        if self.errors:
            sockets = ", ".join(f"{k} {v}" for k, v in self.socket_errors.items() if v)
            text += (
                f"  ERRORS: {self.non2xx} non-2xx, {self.graphql_errors} GraphQL errors"
                f"{', socket ' + sockets if sockets else ''} of {self.requests} responses"
            )
            if self.sample:
                text += f"; first: {self.sample[:300]}"
        return text


def parse(output: str) -> WrkRun:
    requests = _REQUESTS.search(output)
    rate = _RATE.search(output)
    if requests is None or rate is None:
        raise RuntimeError(f"wrk's output has no request count:\n{output}")
    latency = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(output)}
    run = WrkRun(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS[requests.group(3)] / 1e3,
        wrk_rate=float(rate.group(1)),
        p50_ms=latency.get("50", float("nan")),
        p99_ms=latency.get("99", float("nan")),
    )
    if socket := _SOCKET.search(output):
        names = ("connect", "read", "write", "timeout")
        run.socket_errors = dict(zip(names, map(int, socket.groups()), strict=True))
    counts = _COUNTS.search(output)
    if counts is None:
        raise RuntimeError(f"the wrk script printed no counts:\n{output}")
    run.non2xx, run.graphql_errors = int(counts.group(2)), int(counts.group(3))
    if (non_2xx := _NON_2XX.search(output)) is not None:  # wrk's own count, for the record
        run.non2xx = max(run.non2xx, int(non_2xx.group(1)))
    if sample := _SAMPLE.search(output):
        run.sample = sample.group(1)
    return run


def wrk(url: str, script: str, seconds: float, connections: int, *args: str) -> WrkRun:
    """``wrk -t2 -c<connections> -d<seconds>s --latency -s <script> <url> -- <args>``."""
    command = [
        "wrk",
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={TIMEOUT_S}s",
        "--latency",
        "-s",
        str(HERE / script),
        url,
        "--",
        *args,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return parse(done.stdout)
