"""Which encryption key a process runs with (DESIGN §6): configured, or — on the embedded SQLite
default only — a ``lightning.key`` of its own, made once with mode 0600; otherwise it refuses to
start."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lightning.bootstrap import keyring_from
from lightning.config import Settings
from lightning.store.secrets import ConfigurationError, Keyring, keyring_for


def test_given_no_key_when_a_sqlite_database_starts_then_lightning_key_is_made_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "data" / "lightning.db"
    first = keyring_for(None, f"sqlite:///{db}", distributed=False, sqlite_path=str(db))
    made = tmp_path / "data" / "lightning.key"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert "created the encryption key" in caplog.text
    again = keyring_for(None, f"sqlite:///{db}", distributed=False, sqlite_path=str(db))
    assert again == first  # the same key on every later start
    sealed = first.seal(b"s", b"ctx")
    assert again.open(*sealed, b"ctx") == b"s"


def test_given_no_key_when_distributed_or_postgres_then_it_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIGHTNING_ENCRYPTION_KEY", raising=False)
    distributed = Settings(
        database_url="postgresql://x@127.0.0.1/db", amqp_url="amqp://g:g@127.0.0.1/", _env_file=None
    )
    with pytest.raises(ConfigurationError, match="LIGHTNING_ENCRYPTION_KEY is not set"):
        keyring_from(distributed)
    postgres = Settings(database_url="postgresql://x@127.0.0.1/db", amqp_url=None, _env_file=None)
    with pytest.raises(ConfigurationError):
        keyring_from(postgres)
    sqlite_distributed = Settings(
        database_url="sqlite:///x.db", amqp_url="amqp://g:g@127.0.0.1/", _env_file=None
    )
    with pytest.raises(ConfigurationError):
        keyring_from(sqlite_distributed)


def test_given_a_configured_key_then_it_is_used_and_a_bad_one_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = Keyring.generate("prod-1")
    monkeypatch.setenv("LIGHTNING_ENCRYPTION_KEY", f"{entry},{Keyring.generate('old')}")
    keyring = keyring_from(Settings(database_url=f"sqlite:///{tmp_path}/x.db", _env_file=None))
    assert keyring.current == "prod-1" and len(keyring.keys) == 2
    assert not (tmp_path / "lightning.key").exists()
    monkeypatch.setenv("LIGHTNING_ENCRYPTION_KEY", "prod-1:c2hvcnQ=")
    with pytest.raises(ConfigurationError, match="32 bytes"):
        keyring_from(Settings(database_url=f"sqlite:///{tmp_path}/x.db", _env_file=None))
