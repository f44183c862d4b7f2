"""Versioned SQL from ``event_store/``: find, check and apply it (``lightning db migrate``)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..domain.errors import Unavailable
from .backends import Backend, PostgresBackend, Tx

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(postgres|sqlite))?\.sql$")
_LOCK_KEY = 0x4C49_4748  # advisory lock id for migrations ("LIGH")

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS lightning_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def migrations_dir() -> Path:
    configured = os.environ.get("LIGHTNING_MIGRATIONS_DIR")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "event_store"
        if (candidate / "README.md").exists():
            return candidate
    raise Unavailable("event_store/ (the SQL migrations) not found; set LIGHTNING_MIGRATIONS_DIR")


def available(kind: str, folder: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((folder or migrations_dir()).glob("*.sql")):
        match = _NAME.match(path.name)
        if match and match.group(3) in (None, kind):
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def statements(sql: str) -> list[str]:
    """Split a file into statements (``;`` at a line end), keeping ``$$`` bodies whole."""
    result, current, in_body = [], [], False
    for line in sql.splitlines():
        if line.strip().startswith("--") and not in_body:
            continue
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            result.append("\n".join(current).strip().rstrip(";"))
            current = []
    if "".join(current).strip():
        result.append("\n".join(current).strip())
    return result


class Migrator:
    def __init__(self, backend: Backend, folder: Path | None = None) -> None:
        self.backend = backend
        self.migrations = available(backend.kind, folder)

    def _lock(self, tx: Tx) -> None:
        """Serialise migrators (two hosts running ``db migrate`` at once) until commit."""
        if isinstance(self.backend, PostgresBackend):
            tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")

    def applied(self) -> dict[int, str]:
        with self.backend.transaction() as tx:
            self._lock(tx)
            tx.execute(LEDGER_DDL)
            rows = tx.all("SELECT version, checksum FROM lightning_migrations")
            return {int(row["version"]): str(row["checksum"]) for row in rows}

    def pending(self) -> list[Migration]:
        done = self.applied()
        for m in self.migrations:
            if m.version in done and done[m.version] != m.checksum:
                raise Unavailable(
                    f"migration {m.path.name} changed after it was applied; add a new one instead"
                )
        return [m for m in self.migrations if m.version not in done]

    def migrate(self) -> list[Migration]:
        """Apply what is pending, one transaction per file; return what was applied."""
        applied = []
        for migration in self.pending():
            with self.backend.transaction() as tx:
                self._lock(tx)
                if tx.all(
                    "SELECT 1 FROM lightning_migrations WHERE version = ?", (migration.version,)
                ):
                    continue  # another process applied it while we waited for the lock
                for statement in statements(migration.sql):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO lightning_migrations (version, name, checksum, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        migration.version,
                        migration.name,
                        migration.checksum,
                        datetime.now(UTC).isoformat(),
                    ),
                )
            applied.append(migration)
        return applied

    def require_current(self) -> None:
        pending = self.pending()
        if pending:
            names = ", ".join(m.path.name for m in pending)
            raise Unavailable(
                f"the database schema is not up to date ({names} pending):"
                " run `lightning db migrate`"
            )
