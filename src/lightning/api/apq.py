"""Automatic persisted queries, Apollo's protocol: a client sends only the sha256 of a document
it sent before (``extensions.persistedQuery: {version: 1, sha256Hash}``); a hash this server
does not know is answered ``PERSISTED_QUERY_NOT_FOUND``, and the client sends the document
with its hash once, which registers it.

Registered documents are kept in each process (most recently used, up to 4 MiB of text) and in
the store (``persisted_queries``, the newest 10,000), so a hash registered with one server
process is known to every other: a process that does not hold a hash reads it from the store
once. A registration is written after its answer, off the request's path; a process that asks
for it before it is stored answers not-found, and the client sends the document again, as the
protocol has it. A document is held to the same limits as any other (DESIGN §6), every time it
runs: the hash only saves sending it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections import OrderedDict
from datetime import UTC, datetime

from graphql import GraphQLError

from ..store.backends import Backend
from ..store.envelope import format_time
from .context import run
from .limits import DOCUMENT_MAX_CHARS

log = logging.getLogger(__name__)

STORED_MAX = 10_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
NOT_FOUND = "PersistedQueryNotFound"  # the message Apollo's clients look for


class PersistedQueryError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error = GraphQLError(message, extensions={"code": code})


def requested_hash(extensions: object) -> str | None:
    """The sha256 a request names, None when it names none; a malformed one is refused."""
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    asked = extensions["persistedQuery"]
    if not isinstance(asked, dict) or asked.get("version") != 1:
        raise PersistedQueryError(
            "persistedQuery must be {version: 1, sha256Hash: <64 hex digits>}", "BAD_USER_INPUT"
        )
    sha = asked.get("sha256Hash")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise PersistedQueryError(
            "persistedQuery.sha256Hash must be 64 lowercase hex digits", "BAD_USER_INPUT"
        )
    return sha


class PersistedQueries:
    def __init__(
        self, backend: Backend, *, chars: int = 4 * 1024 * 1024, stored: int = STORED_MAX
    ) -> None:
        self._backend = backend
        self._chars = chars
        self._stored = stored
        self._held: OrderedDict[str, str] = OrderedDict()
        self._size = 0
        self._writing: set[asyncio.Task[None]] = set()
        self._registered = 0

    async def document(self, sha: str, query: str | None) -> str:
        """The document to run for a request naming ``sha`` (and perhaps sending ``query``)."""
        if query is not None:
            if hashlib.sha256(query.encode()).hexdigest() != sha:
                raise PersistedQueryError("provided sha does not match query", "BAD_USER_INPUT")
            if len(query) <= DOCUMENT_MAX_CHARS and sha not in self._held:
                self._keep(sha, query)
                self._write(sha, query)
            return query
        held = self._held.get(sha)
        if held is None:
            held = await run(self._read, sha)
            if held is None:
                raise PersistedQueryError(NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND")
            self._keep(sha, held)
        self._held.move_to_end(sha)
        return held

    def _keep(self, sha: str, document: str) -> None:
        if sha in self._held:
            return
        self._held[sha] = document
        self._size += len(document)
        while self._size > self._chars and self._held:
            _, old = self._held.popitem(last=False)
            self._size -= len(old)

    def _read(self, sha: str) -> str | None:
        rows = self._backend.query(
            "SELECT document FROM persisted_queries WHERE sha256 = ?", (sha,)
        )
        if not rows:
            return None
        document = str(rows[0]["document"])
        # What the store holds is checked too: a row that does not match is not run.
        return document if hashlib.sha256(document.encode()).hexdigest() == sha else None

    def _write(self, sha: str, document: str) -> None:
        task = asyncio.get_running_loop().create_task(run(self._store, sha, document))
        self._writing.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not store a persisted query: %s", task.exception())

    def _store(self, sha: str, document: str) -> None:
        with self._backend.transaction() as tx:
            tx.commit_asynchronously()  # lost in a crash: the client sends it again
            tx.execute(
                "INSERT INTO persisted_queries (sha256, document, registered_at) VALUES (?, ?, ?)"
                " ON CONFLICT (sha256) DO NOTHING",
                (sha, document, format_time(datetime.now(UTC))),
            )
            self._registered += 1
            if self._registered % 100 == 0:  # now and then: the oldest beyond the newest N go
                tx.execute(
                    "DELETE FROM persisted_queries WHERE registered_at < (SELECT registered_at"
                    " FROM persisted_queries ORDER BY registered_at DESC LIMIT 1 OFFSET ?)",
                    (self._stored,),
                )

    async def close(self) -> None:
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
