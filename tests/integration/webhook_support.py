"""A real webhook receiver on loopback for the tests: an HTTP server on a thread of its own that
answers as a test scripts it and verifies every request's signature with the Standard Webhooks
algorithm written here from the spec (never the sender's code):

    signed = "<webhook-id>.<webhook-timestamp>.<body>"
    webhook-signature = "v1,<base64(HMAC-SHA256(key, signed))>" [" v1,…" for each further key]
    key = base64-decode(secret without its "whsec_" prefix)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def spec_signatures(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    verified_by: list[str]  # the known secrets whose signature is among the v1 entries

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def signatures(self) -> list[str]:
        return self.headers["webhook-signature"].split(" ")


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """``replies``: per path, what to answer next (the last one repeats); 200 by default."""

    secrets: list[str] = field(default_factory=list)
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    delay: Callable[[str], float] = lambda _path: 0.0
    # Answers instead of ``replies`` when set: given the request just recorded.
    respond: Callable[[Received], Reply] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most_in_flight: int = 0  # requests being answered at once, at the most

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                received = receiver._record(self.path, headers, body)
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.most_in_flight = max(receiver.most_in_flight, receiver.in_flight)
                time.sleep(receiver.delay(self.path))
                with receiver.lock:
                    receiver.in_flight -= 1
                if receiver.respond is not None:
                    status, extra, reply = receiver.respond(received)
                else:
                    status, extra, reply = receiver._reply(self.path)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://localhost:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Received:
        entries = headers.get("webhook-signature", "").split(" ")
        given = {e.partition(",")[2] for e in entries if e.startswith("v1,")}
        with self.lock:
            verified = [
                s
                for s in self.secrets
                if spec_signatures(
                    s, headers.get("webhook-id", ""), headers.get("webhook-timestamp", ""), body
                )
                in given
            ]
            received = Received(path, headers, body, time.time(), verified)
            self.received.append(received)
        return received

    def _reply(self, path: str) -> Reply:
        with self.lock:
            queue = self.replies.get(path)
            if not queue:
                return 200, {}, b"ok"
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def at(self, path: str = "/hook") -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on loopback for one test."""
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def dead_endpoint() -> tuple[socket.socket, int, list[socket.socket]]:
    """A port whose connections time out: a listening socket that never accepts, its backlog
    filled, so the kernel drops further SYNs (a connect then hangs until the sender's deadline).
    Returns the socket, its port and the filler connections (close them all afterwards)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    return listener, port, fillers


def eventually(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)
