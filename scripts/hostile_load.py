"""Hostile load (issue 11): abusive GraphQL documents must be refused fast, and other clients
must stay fast while they arrive.

It seeds 200 agents and one with a 30 KB system prompt, measures a simple query and
``/health/live`` alone for a few seconds and sends each abusive document below ``--isolated``
times on its own (the baselines: what a request costs without contention), then for
``--seconds`` runs six clients at once, each in its own thread with its own connection:

* four abusive ones, each sending its document back to back (every request a fresh copy, so a
  document cache does not answer for the server): (a) 1,000 aliases of ``agents(first: 500)``,
  (b) 300 aliases of ``events(first: 1000) { data }``, (c) one field with 100,000
  ``@include(if: true)`` directives, (d) a mutation with 200 aliased ``registerAgent``. Each
  answer must be a refusal: HTTP < 500, ``data`` null and every error ``BAD_USER_INPUT``.
* a simple query (``agents(first: 10)``) and ``GET /health/live``, each every ``--interval``
  seconds (default 0.05), which must succeed.

It prints per client the requests, the refusals or successes, anything else it got (with a
sample), and p50/p99/max latency of the refusals (abusive clients) or successes (the others);
then a verdict against the targets — refusals p99 < 50 ms, simple query and /health/live
p99 < 100 ms — and checks that the abusive phase appended no event (the event head before and
after; only the abusive clients could have written). Exit status 1 if anything failed.

    .venv/bin/python scripts/hostile_load.py --start [--seconds 20]    # its own distributed server
    .venv/bin/python scripts/hostile_load.py --url http://127.0.0.1:8000 --token ADMIN_SECRET

``--start`` creates a fresh PostgreSQL database, migrates it and runs ``lightning worker all``
and ``lightning serve`` on a free port with their own RabbitMQ exchange and queue prefix, and
removes all of it at the end (``--keep-logs`` keeps the logs); the error lines of the server's
and worker's logs are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import stack

AGENTS = 200
PROMPT_CHARS = 30_000
REFUSAL_P99_MS = 50.0
OBSERVER_P99_MS = 100.0
RESPONSE_CAP = 1 << 20  # read at most this much of an answer (a refused document's is small)
MARK = "~N~"  # replaced by the request's number in every abusive document
GROK = 'provider: "grok", model: "grok-code-fast-1"'
SIMPLE = "{ agents(first: 10) { edges { node { id } } } }"


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ---- GraphQL helpers ----------------------------------------------------------------------------


def graphql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}})
    body = response.json()
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"{query[:80]}…: HTTP {response.status_code} {response.text[:500]}")
    return body["data"]


def register_many(names: list[str]) -> str:
    fields = (
        f"m{i}: registerAgent(input: {{name: {json.dumps(n)}, {GROK}}}) {{ position }}"
        for i, n in enumerate(names)
    )
    return "mutation { " + " ".join(fields) + " }"


def seed(client: httpx.Client, run: str) -> int:
    """200 agents (10 per request) and one with a 30 KB system prompt; the last position."""
    last = 0
    for start in range(0, AGENTS, 10):
        names = [f"load-{run}-{i}" for i in range(start, min(start + 10, AGENTS))]
        data = graphql(client, register_many(names))
        last = max(last, *(p["position"] for p in data.values()))
    line = "You are a careful reviewer. Check every claim twice and cite the line.\n"
    prompt = (line * (PROMPT_CHARS // len(line) + 1))[:PROMPT_CHARS]
    data = graphql(
        client,
        f'mutation($p: String!) {{ registerAgent(input: {{name: "load-{run}-prompt", {GROK},'
        " systemPrompt: $p}) { position } }",
        {"p": prompt},
    )
    return max(last, data["registerAgent"]["position"])


def events_after(client: httpx.Client, after: int) -> list[dict[str, Any]]:
    """Every event in the store after ``after`` (paged, 500 at a time)."""
    found: list[dict[str, Any]] = []
    query = "query($a: Int!) { events(after: $a, first: 500) { position type actor } }"
    while True:
        page = graphql(client, query, {"a": after})["events"]
        found += page
        if len(page) < 500:
            return found
        after = page[-1]["position"]


# ---- clients ------------------------------------------------------------------------------------


def _template(query: str) -> list[bytes]:
    return json.dumps({"query": query}).encode().split(MARK.encode())


def abusive_documents(run: str) -> dict[str, list[bytes]]:
    """Name -> the JSON body split at the request-number marks."""
    agents = (
        f"a{MARK}_{i}: agents(first: 500) {{ edges {{ node {{ id name }} }} }}" for i in range(1000)
    )
    events = (f"e{MARK}_{i}: events(first: 1000) {{ data }}" for i in range(300))
    register = (
        f'r{i}: registerAgent(input: {{name: "hostile-{run}-{MARK}-{i}", {GROK}}}) {{ position }}'
        for i in range(200)
    )
    return {
        "(a) 1,000 x agents(first: 500)": _template("{ " + " ".join(agents) + " }"),
        "(b) 300 x events(first: 1000)": _template("{ " + " ".join(events) + " }"),
        "(c) 100,000 @include directives": _template(
            f"{{ t{MARK}: __typename" + " @include(if: true)" * 100_000 + " }"
        ),
        "(d) 200 x registerAgent": _template("mutation { " + " ".join(register) + " }"),
    }


@dataclass
class Client:
    name: str
    send: Callable[[httpx.Client, int], tuple[int, bytes]]  # -> status, body (capped)
    judge: Callable[[int, bytes], str]  # -> "refused", "ok" or what went wrong
    expected: str  # "refused" or "ok"
    interval: float = 0.0  # seconds from one request's start to the next; 0: back to back
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    samples: dict[str, str] = field(default_factory=dict)

    def run(self, base: str, headers: dict[str, str], stop: threading.Event) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    status, body = self.send(http, n)
                    outcome = self.judge(status, body)
                except httpx.HTTPError as exc:
                    outcome, body = f"{type(exc).__name__}", str(exc).encode()
                elapsed = time.perf_counter() - started
                self.latencies[outcome].append(elapsed * 1000)
                if outcome != self.expected:
                    self.samples.setdefault(outcome, body[:300].decode(errors="replace"))
                if self.interval > elapsed:
                    stop.wait(self.interval - elapsed)


def _capped(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > RESPONSE_CAP:
            break
    return b"".join(chunks)


def post_template(parts: list[bytes]) -> Callable[[httpx.Client, int], tuple[int, bytes]]:
    def send(http: httpx.Client, n: int) -> tuple[int, bytes]:
        body = str(n).encode().join(parts)
        headers = {"Content-Type": "application/json"}
        with http.stream("POST", "/graphql", content=body, headers=headers) as response:
            return response.status_code, _capped(response)

    return send


def get(path: str) -> Callable[[httpx.Client, int], tuple[int, bytes]]:
    def send(http: httpx.Client, n: int) -> tuple[int, bytes]:
        with http.stream("GET", path) as response:
            return response.status_code, _capped(response)

    return send


def judge_graphql(status: int, raw: bytes) -> str:
    if len(raw) > RESPONSE_CAP:
        return f"HTTP {status}, answer > {RESPONSE_CAP >> 20} MiB"
    try:
        body = json.loads(raw)
    except ValueError:
        return f"HTTP {status}, not JSON"
    errors = body.get("errors") or [] if isinstance(body, dict) else []
    if not errors:
        ok = status == 200 and isinstance(body, dict) and body.get("data") is not None
        return "ok" if ok else f"HTTP {status}, no errors, no data"
    codes = sorted({str((e.get("extensions") or {}).get("code", "no code")) for e in errors})
    if status < 500 and codes == ["BAD_USER_INPUT"]:
        return "refused" if body.get("data") is None else "BAD_USER_INPUT with partial data"
    return f"HTTP {status}, {'/'.join(codes)}"


def judge_health(status: int, raw: bytes) -> str:
    return "ok" if status == 200 else f"HTTP {status}"


def observers(interval: float) -> list[Client]:
    simple = _template(SIMPLE)
    return [
        Client("simple query", post_template(simple), judge_graphql, "ok", interval),
        Client("GET /health/live", get("/health/live"), judge_health, "ok", interval),
    ]


def run_phase(clients: list[Client], server: stack.Server, seconds: float) -> float:
    """Run the clients together for ``seconds``; the load generator's CPU seconds."""
    stop = threading.Event()
    headers = {"Authorization": f"Bearer {server.token}"}
    threads = [
        threading.Thread(target=c.run, args=(server.url, headers, stop), daemon=True)
        for c in clients
    ]
    cpu = time.process_time()
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return time.process_time() - cpu


# ---- report -------------------------------------------------------------------------------------


def table(rows: list[tuple[str, Client]]) -> None:
    print(
        f"{'client':<40} {'requests':>8} {'expected':>16} {'other':>6}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for label, c in rows:
        good = c.latencies.get(c.expected, [])
        total = sum(len(v) for v in c.latencies.values())
        print(
            f"{label:<40} {total:>8} {f'{len(good)} {c.expected}':>16} {total - len(good):>6}"
            f" {percentile(good, 0.5):>8.1f} {percentile(good, 0.99):>8.1f}"
            f" {max(good, default=math.nan):>8.1f}"
        )
    for label, c in rows:
        for outcome, values in c.latencies.items():
            if outcome != c.expected:
                print(
                    f"  {label}: {len(values)} x {outcome} (p50 {percentile(values, 0.5):.1f} ms,"
                    f" max {max(values):.1f} ms), e.g. {c.samples.get(outcome, '')!r}"
                )


def verdict(abusive: list[Client], watched: list[Client], appended: list[dict[str, Any]]) -> bool:
    lines: list[tuple[bool, str]] = []
    for c in abusive + watched:
        good = c.latencies.get(c.expected, [])
        total = sum(len(v) for v in c.latencies.values())
        limit = REFUSAL_P99_MS if c in abusive else OBSERVER_P99_MS
        p50, p99 = percentile(good, 0.5), percentile(good, 0.99)
        ok = bool(good) and len(good) == total and p99 < limit
        lines.append(
            (
                ok,
                f"{c.name}: {len(good)}/{total} {c.expected}, p50 {p50:.1f} ms,"
                f" p99 {p99:.1f} ms (target p99 < {limit:.0f} ms)",
            )
        )
    types = sorted({e["type"] for e in appended})
    lines.append(
        (not appended, f"events appended during the abusive phase: {len(appended)} {types or ''}")
    )
    print("\nverdict:")
    for ok, text in lines:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    passed = all(ok for ok, _ in lines)
    print(f"overall: {'PASS' if passed else 'FAIL'}")
    return passed


def isolated(server: stack.Server, documents: dict[str, list[bytes]], count: int) -> list[Client]:
    """Each abusive document ``count`` times with nothing else running: its own cost."""
    clients = []
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        for name, parts in documents.items():
            client = Client(name, post_template(parts), judge_graphql, "refused")
            for n in range(1, count + 1):
                started = time.perf_counter()
                status, body = client.send(http, 1_000_000 + n)  # not reused later
                outcome = client.judge(status, body)
                client.latencies[outcome].append((time.perf_counter() - started) * 1000)
                if outcome != client.expected:
                    client.samples.setdefault(outcome, body[:300].decode(errors="replace"))
            clients.append(client)
    return clients


def server_usage(server: stack.Server) -> tuple[float, int] | None:
    """The server process's CPU seconds and RSS (KiB) so far, when its pid is known."""
    if server.pid is None:
        return None
    with contextlib.suppress(OSError):
        return stack.cpu_seconds(server.pid), stack.rss_kib(server.pid)
    return None


def trial(server: stack.Server, args: argparse.Namespace) -> bool:
    run = secrets.token_hex(3)
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        seeded = seed(client, run)
        print(f"seeded {AGENTS} agents and one with a {PROMPT_CHARS:,}-character system prompt")
        alone = observers(args.interval)
        run_phase(alone, server, args.baseline)
        solo = isolated(server, abusive_documents(run), args.isolated)
        print(
            f"baselines: {args.baseline:.0f} s of the simple query and /health/live alone;"
            f" each abusive document {args.isolated} times alone, one at a time"
        )
        head = max([seeded, *(e["position"] for e in events_after(client, seeded))])
        abusive = [
            Client(name, post_template(parts), judge_graphql, "refused", args.abusive_interval)
            for name, parts in abusive_documents(run).items()
        ]
        watched = observers(args.interval)
        print(f"abusive phase: {args.seconds:.0f} s, event head {head} before it")
        before = server_usage(server)
        cpu = run_phase(abusive + watched, server, args.seconds)
        after = server_usage(server)
        appended = events_after(client, head)
    print(f"load generator CPU: {cpu:.1f} s in {args.seconds:.0f} s; {stack.loadavg()}")
    if before and after and server.pid:
        print(
            f"server process: {after[0] - before[0]:.1f} CPU s in the {args.seconds:.0f} s;"
            f" RSS {before[1] >> 10} MiB before, {after[1] >> 10} MiB after"
            f" (peak {stack.rss_kib(server.pid, 'VmHWM') >> 10} MiB)"
        )
    print()
    rows = [(f"{c.name} (alone)", c) for c in alone + solo]
    rows += [(c.name, c) for c in abusive + watched]
    table(rows)
    return verdict(abusive, watched, appended)


@contextlib.contextmanager
def target(args: argparse.Namespace) -> Iterator[stack.Server]:
    if not args.start:
        yield stack.attached(args.url, args.token)
        return
    server: stack.Server | None = None
    try:
        with stack.distributed("hostile", keep=args.keep_logs) as server:
            print(f"started {server.url} (distributed; logs in {server.workdir})")
            yield server
    finally:
        if server is not None:
            where = f" ({', '.join(map(str, server.logs))})" if args.keep_logs else ""
            print(f"\nserver and worker log lines with ERROR/CRITICAL/Traceback{where}:")
            for line in server.problems or ["(none)"]:
                print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="its admin secret (with --url)")
    parser.add_argument("--start", action="store_true", help="start a distributed server")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the abusive phase")
    parser.add_argument("--baseline", type=float, default=3.0, help="seconds of observers alone")
    parser.add_argument(
        "--isolated", type=int, default=10, help="sends of each abusive document alone, first"
    )
    parser.add_argument("--interval", type=float, default=0.05, help="observers' period (s)")
    parser.add_argument(
        "--abusive-interval",
        type=float,
        default=0.0,
        help="each abusive client's period (s); default 0: back to back",
    )
    parser.add_argument("--keep-logs", action="store_true", help="with --start")
    args = parser.parse_args()
    if args.start == bool(args.url) or (args.url and not args.token):
        parser.error("give --start, or --url with --token")
    with target(args) as server:
        passed = trial(server, args)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
