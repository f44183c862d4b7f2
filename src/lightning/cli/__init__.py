"""The ``lightning`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from ..config import Settings
from ..domain.errors import LightningError, ValidationFailed
from ..store.backends import Backend, open_backend
from ..store.envelope import format_time
from ..store.migrations import Migrator
from . import events
from .common import POSITION_MAX, err, fail, lightning, out, parse_id, parse_time
from .consumers import consumers_app, projections_app
from .sagas import sagas_app, workflows_app
from .webhooks import webhooks_app

app = typer.Typer(
    help="Lightning: the event-sourced control plane of an AI-agent platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys and the encryption keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema (event_store/).", no_args_is_help=True)
app.add_typer(events.app, name="events")
app.add_typer(consumers_app, name="consumers")
app.add_typer(projections_app, name="projections")
app.add_typer(sagas_app, name="sagas")
app.add_typer(workflows_app, name="workflows")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


# ---- serve --------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (LIGHTNING_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (LIGHTNING_PORT)")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="server processes sharing the port (distributed mode only: on the embedded"
            " default one process holds the SQLite database and runs the workers)",
        ),
    ] = 1,
    access_log: Annotated[
        bool, typer.Option(help="log a line per HTTP request (off: it costs ~6 % of the CPU)")
    ] = False,
) -> None:
    """Run the GraphQL server (and, on the embedded default, the projection builders, the sagas
    and the timer scheduler)."""
    import uvicorn

    from ..api import create_app
    from ..api.http import REQUEST_MAX_BYTES
    from ..bootstrap import keyring_from

    settings = Settings()
    bind_host, bind_port = host or settings.host, port or settings.port
    try:
        keyring_from(settings)  # refused here with a message, not in the server's startup
    except LightningError as exc:
        raise fail(exc.code, exc.message) from None
    if workers > 1 and not settings.is_distributed:
        raise fail(
            "BAD_USER_INPUT",
            "--workers needs the distributed mode (LIGHTNING_DATABASE_URL on PostgreSQL and"
            " LIGHTNING_AMQP_URL): on the embedded default one process owns the SQLite database"
            " and runs the consumers",
        )
    if settings.admin_secret is None:
        err.print(
            "[yellow]LIGHTNING_ADMIN_SECRET is not set:[/yellow] only API keys authenticate "
            "(create one with `lightning keys bootstrap`)."
        )
    processes = f", {workers} processes" if workers > 1 else ""
    err.print(f"Lightning on http://{bind_host}:{bind_port}/graphql ({_mode(settings)}{processes})")
    options: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_level": "info",
        "access_log": access_log,
        "ws_max_size": REQUEST_MAX_BYTES,  # a websocket message is held to an HTTP body's limit
    }
    if workers > 1:  # each process builds its app from the same environment
        uvicorn.run("lightning.api:create_app", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)


def _mode(settings: Settings) -> str:
    store = "PostgreSQL" if settings.is_postgres else f"SQLite {settings.database_url}"
    bus = "RabbitMQ" if settings.is_distributed else "in-process bus"
    return f"{store}, {bus}"


@app.command()
def worker(
    kinds: Annotated[
        list[str] | None,
        typer.Argument(
            help="relay, a consumer kind (projections, sagas) or all (default: all); several"
            " may be given"
        ),
    ] = None,
) -> None:
    """Run the distributed workers: the outbox relay and/or consumer kinds.

    Needs LIGHTNING_AMQP_URL (RabbitMQ). Run as many `worker projections` or `worker sagas` as
    you like: each queue has one active consumer and the others stand by; a second relay stands
    by too. `worker sagas` also fires the durable timers (each exactly once)."""
    import asyncio
    import logging

    from ..workers import chosen, run_workers

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    if not settings.is_distributed:
        raise fail(
            "BAD_USER_INPUT",
            "workers need LIGHTNING_AMQP_URL; on the embedded default `lightning serve` runs"
            " them in-process",
        )
    with lightning() as lt:
        names = chosen(lt, kinds or ["all"])
        err.print(f"Lightning worker {' '.join(names)} ({_mode(settings)})")
        asyncio.run(run_workers(lt, names))


# ---- replay -------------------------------------------------------------------------------------


@app.command()
def replay(
    aggregate_id: str,
    to_version: Annotated[
        int | None,
        typer.Option("--to-version", min=1, max=POSITION_MAX, help="stop after this version"),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="state at this ISO-8601 time")
    ] = None,
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rebuild an aggregate's state from its events and print it."""
    from ..replay import replay as do_replay

    with lightning() as lt:
        if to_version is not None and as_of is not None:
            raise ValidationFailed("give --to-version or --as-of, not both")
        result = do_replay(
            lt, parse_id(aggregate_id), to_version, None if as_of is None else parse_time(as_of)
        )
        body: dict[str, Any] = {
            "aggregate_id": str(result.aggregate_id),
            "aggregate_type": result.aggregate_type,
            "version": result.version,
            "position": result.position,
            "occurred_at": format_time(result.occurred_at),
            "state": result.state,
        }
        if json_:
            sys.stdout.write(json.dumps(body) + "\n")
        else:
            out.print_json(data=body)


# ---- db -----------------------------------------------------------------------------------------


@contextmanager
def backend() -> Iterator[Backend]:
    try:
        opened = open_backend(Settings().database_url)
    except LightningError as exc:
        raise fail(exc.code, exc.message) from None
    except Exception as exc:
        raise fail("UNAVAILABLE", f"cannot open the database: {exc}") from None
    try:
        yield opened
    except LightningError as exc:
        raise fail(exc.code, exc.message) from None
    finally:
        opened.close()


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the pending SQL of event_store/ (idempotent; safe to run concurrently)."""
    with backend() as db:
        applied = Migrator(db).migrate()
        for migration in applied:
            err.print(f"applied {migration.path.name}")
        err.print("schema is up to date" if not applied else f"{len(applied)} migration(s) applied")


@db_app.command("status")
def db_status() -> None:
    """List the migrations and whether each has been applied."""
    with backend() as db:
        migrator = Migrator(db)
        pending = {m.version for m in migrator.pending()}
        for migration in migrator.migrations:
            state = "pending" if migration.version in pending else "applied"
            out.print(f"{migration.path.name:40} {state}")


# ---- keys ---------------------------------------------------------------------------------------


@keys_app.command("bootstrap")
def keys_bootstrap(
    name: Annotated[str, typer.Option(help="the key's name")] = "bootstrap-admin",
) -> None:
    """Create an admin API key and print its secret (shown once, stored only as a hash)."""
    from ..services import SYSTEM, Context

    with lightning() as lt:
        result = lt.api_keys.issue(Context(SYSTEM), name=name, role="admin")
        err.print(f"admin key {result.key.id} created; its secret (shown once):")
        sys.stdout.write(f"{result.secret}\n")


@keys_app.command("reencrypt")
def keys_reencrypt() -> None:
    """Seal every stored secret again under the first LIGHTNING_ENCRYPTION_KEY entry, so that
    an older key can then be dropped from the setting."""
    with lightning() as lt:
        result = lt.vault.reencrypt()
        current = lt.vault.keyring.current
        err.print(
            f"re-encrypted {result.moved} secret(s) under key {current!r};"
            f" {result.current} were under it already"
        )
        left = {k: n for k, n in lt.vault.counts().items() if k != current}
        if left:  # written meanwhile by a process still configured with the old key first
            raise fail("CONFLICT", f"secrets still under other keys: {left}; run it again")


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Option("--id", help="the key's id")] = "",
) -> None:
    """Print a new encryption key entry for LIGHTNING_ENCRYPTION_KEY (put it first to encrypt
    with it; keep the old one after it until `keys reencrypt` has run)."""
    from datetime import UTC, datetime

    from ..store.secrets import Keyring

    entry = Keyring.generate(key_id or f"k{datetime.now(UTC):%Y%m%d}")
    try:
        Keyring.parse(entry)  # the id is checked here
    except LightningError as exc:
        raise fail(exc.code, exc.message) from None
    sys.stdout.write(entry + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
