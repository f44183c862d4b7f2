"""Secrets encrypted at rest (DESIGN §6): the keyring of ``LIGHTNING_ENCRYPTION_KEY`` and the
``secrets`` table.

A key is ``key-id:base64-of-32-bytes``; the setting lists one or more, comma-separated: the
first encrypts, all decrypt, so a new key goes first and ``lightning keys reencrypt`` moves every
ciphertext to it before an old key is dropped. Each secret is sealed with AES-256-GCM under a
fresh 96-bit nonce, its row's id and purpose as associated data (a ciphertext copied to another
row does not open there), and tagged with the id of the key that sealed it. The event log holds
only a secret's id and fingerprint, never the secret or its ciphertext.

Without a configured key, a SQLite database gets one of its own: ``lightning.key`` beside the
database file, created on first start with mode 0600. Anything else (distributed mode, a
PostgreSQL database) refuses to start without one: several processes must share the key, and a
key made up by one of them would lock the others out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets as random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..domain.errors import LightningError
from .backends import Backend, Tx

if TYPE_CHECKING:
    from .event_store import Events

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_FILE = "lightning.key"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_NONCE = 12


class ConfigurationError(LightningError):
    """The process cannot start as configured (the message says what to set)."""

    code = "BAD_USER_INPUT"


class SecretUnreadable(LightningError):
    """A ciphertext no configured key opens (its key was dropped, or the row was altered)."""

    code = "INTERNAL"


@dataclass(frozen=True)
class Keyring:
    keys: tuple[tuple[str, bytes], ...]  # (key id, 32 bytes); the first encrypts

    @classmethod
    def parse(cls, value: str) -> Keyring:
        keys: list[tuple[str, bytes]] = []
        for n, entry in enumerate(p.strip() for p in value.split(",")):
            key_id, sep, encoded = entry.partition(":")
            where = f"LIGHTNING_ENCRYPTION_KEY entry {n + 1}"
            if not sep or not _KEY_ID.match(key_id):
                raise ConfigurationError(
                    f"{where}: write key-id:base64-of-32-bytes (the id: 1-32 of A-Z a-z 0-9 _ . -)"
                )
            try:
                raw = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ConfigurationError(f"{where} ({key_id}): the key must be 32 bytes in base64")
            if any(k == key_id for k, _ in keys):
                raise ConfigurationError(f"{where}: key id {key_id!r} given twice")
            keys.append((key_id, raw))
        return cls(tuple(keys))

    @staticmethod
    def generate(key_id: str) -> str:
        """A new key entry, as the setting takes it."""
        return f"{key_id}:{base64.b64encode(random.token_bytes(32)).decode()}"

    @property
    def current(self) -> str:
        return self.keys[0][0]

    def seal(self, plaintext: bytes, context: bytes) -> tuple[str, str]:
        """(key id, base64 of nonce + ciphertext + tag)."""
        key_id, key = self.keys[0]
        nonce = os.urandom(_NONCE)
        sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, context)
        return key_id, base64.b64encode(sealed).decode()

    def open(self, key_id: str, sealed: str, context: bytes) -> bytes:
        key = dict(self.keys).get(key_id)
        if key is None:
            raise SecretUnreadable(
                f"a secret is sealed with key {key_id!r}, which LIGHTNING_ENCRYPTION_KEY does not"
                " list (add it after the current key, run `lightning keys reencrypt`, then drop"
                " it)"
            )
        try:
            raw = base64.b64decode(sealed, validate=True)
            return AESGCM(key).decrypt(raw[:_NONCE], raw[_NONCE:], context)
        except (InvalidTag, ValueError):  # altered, cut short, not base64 (binascii.Error)
            raise SecretUnreadable(f"a secret sealed with key {key_id!r} does not open") from None


def keyring_for(
    configured: str | None, database_url: str, *, distributed: bool, sqlite_path: str | None
) -> Keyring:
    """The keyring the process runs with (see the module's docstring)."""
    if configured:
        return Keyring.parse(configured)
    if distributed or sqlite_path is None:
        raise ConfigurationError(
            "LIGHTNING_ENCRYPTION_KEY is not set: distributed mode and PostgreSQL databases need"
            " it (webhook and delivered key secrets are encrypted with it). Make one with"
            " `lightning keys generate` and give every process the same value."
        )
    if sqlite_path == ":memory:":
        return Keyring.parse(Keyring.generate("memory"))
    return Keyring.parse(_key_file(Path(sqlite_path).resolve().parent / KEY_FILE))


def _key_file(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        entry = Keyring.generate(f"k{datetime.now(UTC):%Y%m%d}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process is making it: wait for its contents
            return _written(path)
        with os.fdopen(fd, "w") as f:
            f.write(entry + "\n")
        log.warning(
            "created the encryption key %s (mode 0600): it opens the secrets in the database;"
            " back it up with the database, or set LIGHTNING_ENCRYPTION_KEY",
            path,
        )
        return entry
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users: chmod 600 it", path)
    return text


def _written(path: Path, wait: float = 5.0) -> str:
    deadline = time.monotonic() + wait
    while not (text := path.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


def fingerprint(secret: str) -> str:
    """What the log keeps of a secret: enough to tell two apart, nothing to recover one."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reencrypted:
    moved: int
    current: int  # already under the current key


class SecretVault:
    """The ``secrets`` table: one sealed secret per id."""

    def __init__(self, backend: Backend, keyring: Keyring) -> None:
        self.backend = backend
        self.keyring = keyring

    def put(self, tx: Tx, secret_id: UUID, purpose: str, value: str) -> None:
        key_id, sealed = self.keyring.seal(value.encode(), _context(secret_id, purpose))
        tx.execute(
            "INSERT INTO secrets (id, purpose, key_id, sealed, created_at) VALUES (?, ?, ?, ?, ?)",
            (str(secret_id), purpose, key_id, sealed, datetime.now(UTC).isoformat()),
        )

    def get(self, tx: Tx, secret_id: UUID) -> str | None:
        row = tx.one("SELECT purpose, key_id, sealed FROM secrets WHERE id = ?", (str(secret_id),))
        if row is None:
            return None
        context = _context(secret_id, row["purpose"])
        return self.keyring.open(row["key_id"], row["sealed"], context).decode()

    def read(self, secret_ids: Sequence[UUID]) -> dict[UUID, str]:
        with self.backend.transaction(commit=False) as tx:
            found = {i: self.get(tx, i) for i in dict.fromkeys(secret_ids)}
        return {i: v for i, v in found.items() if v is not None}

    def sealing(
        self, events: Events, secret_id: UUID, purpose: str, value: str, append: Callable[[], T]
    ) -> T:
        """Seal ``value`` as ``secret_id``, then ``append`` the events that refer to it: a
        sealed secret exists before any event names it (on the store, in a transaction of its
        own; in a session, in the same one), and is erased again when the append fails."""
        with events.transaction() as tx:
            self.put(tx, secret_id, purpose, value)
        try:
            return append()
        except BaseException:
            try:
                with events.transaction() as tx:
                    self.erase(tx, secret_id)
            except Exception:  # sealed and never named: harmless, and reported
                log.warning("could not erase the unused secret %s", secret_id, exc_info=True)
            raise

    def erase(self, tx: Tx, secret_id: UUID) -> None:
        tx.execute("DELETE FROM secrets WHERE id = ?", (str(secret_id),))

    def reencrypt(self, *, batch: int = 500) -> Reencrypted:
        """Seal again, under the current key, every secret sealed under another."""
        moved = 0
        current = self.keyring.current
        while True:
            with self.backend.transaction() as tx:
                rows = tx.all(
                    "SELECT id, purpose, key_id, sealed FROM secrets WHERE key_id <> ?"
                    " ORDER BY id LIMIT ?",
                    (current, batch),
                )
                for row in rows:
                    context = _context(UUID(row["id"]), row["purpose"])
                    plain = self.keyring.open(row["key_id"], row["sealed"], context)
                    key_id, sealed = self.keyring.seal(plain, context)
                    tx.execute(
                        "UPDATE secrets SET key_id = ?, sealed = ? WHERE id = ?",
                        (key_id, sealed, row["id"]),
                    )
            moved += len(rows)
            if len(rows) < batch:
                break
        left = self.backend.query("SELECT COUNT(*) AS n FROM secrets WHERE key_id = ?", (current,))
        return Reencrypted(moved=moved, current=int(left[0]["n"]) - moved)

    def counts(self) -> dict[str, int]:
        rows = self.backend.query("SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id")
        return {r["key_id"]: int(r["n"]) for r in rows}


def _context(secret_id: UUID, purpose: str) -> bytes:
    return f"lightning-secret\x1f{secret_id}\x1f{purpose}".encode()


def new_webhook_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(random.token_bytes(32)).decode()
