"""The ``lightning`` command line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from .bootstrap import Lightning
from .config import Settings
from .domain.errors import LightningError, NotFound, ValidationFailed
from .store.backends import Backend, open_backend
from .store.envelope import Envelope, format_time
from .store.migrations import Migrator

app = typer.Typer(
    help="Lightning: the event-sourced control plane of an AI-agent platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Read the event log.", no_args_is_help=True)
projections_app = typer.Typer(help="Inspect and rebuild read models.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the database schema (event_store/).", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(projections_app, name="projections")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

EXIT_CODES = {
    "BAD_USER_INPUT": 2,
    "NOT_FOUND": 3,
    "CONFLICT": 4,
    "FORBIDDEN": 5,
    "UNAUTHENTICATED": 5,
    "UNAVAILABLE": 6,
}

T = TypeVar("T")


@contextmanager
def lightning() -> Iterator[Lightning]:
    """Open the configured store; turn domain errors into a message and an exit code."""
    try:
        with Lightning.open(Settings()) as opened:
            yield opened
    except LightningError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False)
        raise typer.Exit(EXIT_CODES.get(exc.code, 1)) from None


def parse_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValidationFailed(f"{value!r} is not a valid id") from None


def parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{value!r} is not an ISO-8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def type_filter(patterns: list[str] | None) -> Callable[[Envelope], bool]:
    if not patterns:
        return lambda _e: True
    return lambda e: any(
        e.type.startswith(p[:-1]) if p.endswith("*") else e.type == p for p in patterns
    )


def print_events(envelopes: list[Envelope], as_json: bool) -> None:
    if as_json:
        for e in envelopes:
            sys.stdout.write(e.to_json() + "\n")
        sys.stdout.flush()
        return
    table = Table("position", "occurred_at", "type", "aggregate_id", "v", "actor")
    for e in envelopes:
        table.add_row(
            str(e.position),
            format_time(e.occurred_at),
            e.type,
            str(e.aggregate_id),
            str(e.version),
            e.actor,
        )
    out.print(table)


# ---- serve --------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (LIGHTNING_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (LIGHTNING_PORT)")] = None,
) -> None:
    """Run the GraphQL server (and, on the embedded default, the projection builders)."""
    import uvicorn

    from .api import create_app

    settings = Settings()
    bind_host, bind_port = host or settings.host, port or settings.port
    if settings.admin_secret is None:
        err.print(
            "[yellow]LIGHTNING_ADMIN_SECRET is not set:[/yellow] only API keys authenticate "
            "(create one with `lightning keys bootstrap`)."
        )
    err.print(f"Lightning on http://{bind_host}:{bind_port}/graphql ({_mode(settings)})")
    uvicorn.run(create_app(settings), host=bind_host, port=bind_port, log_level="info")


def _mode(settings: Settings) -> str:
    store = "PostgreSQL" if settings.is_postgres else f"SQLite {settings.database_url}"
    bus = "RabbitMQ" if settings.is_distributed else "in-process bus"
    return f"{store}, {bus}"


@app.command()
def worker(
    kinds: Annotated[
        list[str] | None, typer.Argument(help="relay, projections or all (default: all)")
    ] = None,
) -> None:
    """Run the distributed workers: the outbox relay and/or the projection builders.

    Needs LIGHTNING_AMQP_URL (RabbitMQ). Run as many `worker projections` as you like: each queue
    has one active consumer and the others stand by; a second relay stands by too."""
    import asyncio
    import logging

    from .workers import WorkerKind, run_workers

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        chosen = [WorkerKind(k) for k in (kinds or ["all"])]
    except ValueError:
        err.print("[red]error[/red] (BAD_USER_INPUT): workers are relay, projections or all")
        raise typer.Exit(2) from None
    settings = Settings()
    if not settings.is_distributed:
        err.print(
            "[red]error[/red] (BAD_USER_INPUT): workers need LIGHTNING_AMQP_URL; on the embedded "
            "default `lightning serve` runs them in-process"
        )
        raise typer.Exit(2)
    with lightning() as lt:
        err.print(f"Lightning worker {' '.join(k.value for k in chosen)} ({_mode(settings)})")
        asyncio.run(run_workers(lt, chosen))


# ---- events -------------------------------------------------------------------------------------


@events_app.command("list")
def events_list(
    json_: Annotated[bool, typer.Option("--json", help="one envelope per line")] = False,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="type or prefix (agent.*)")
    ] = None,
    aggregate: Annotated[str | None, typer.Option(help="only this aggregate id")] = None,
    since: Annotated[str | None, typer.Option(help="a position, or an ISO-8601 time")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
) -> None:
    """List events, oldest first."""
    with lightning() as lt:
        accept = type_filter(type_)
        after, from_time = 0, None
        if since is not None:
            if since.isdigit():
                after = int(since)
            else:
                from_time = parse_time(since)
        source = lt.store.load(parse_id(aggregate)) if aggregate else lt.store.iterate(after)
        found: list[Envelope] = []
        for e in source:
            if (
                e.position > after
                and accept(e)
                and (from_time is None or e.occurred_at >= from_time)
            ):
                found.append(e)
                if len(found) >= limit:
                    break
        print_events(found, json_)


@events_app.command("show")
def events_show(position: int) -> None:
    """Print one event (its envelope as JSON)."""
    with lightning() as lt:
        envelope = lt.store.get(position)
        if envelope is None:
            raise NotFound(f"no event at position {position}")
        sys.stdout.write(json.dumps(envelope.model_dump(mode="json"), indent=2) + "\n")


@events_app.command("tail")
def events_tail(
    json_: Annotated[bool, typer.Option("--json")] = False,
    type_: Annotated[list[str] | None, typer.Option("--type")] = None,
    after: Annotated[
        int | None, typer.Option(help="start after this position (default: now)")
    ] = None,
    interval: Annotated[float, typer.Option(help="poll interval, seconds")] = 0.5,
) -> None:
    """Follow the event log until interrupted."""
    with lightning() as lt:
        accept = type_filter(type_)
        last = lt.store.max_position() if after is None else after
        try:
            while True:
                batch = lt.store.read(last, 500)
                if batch:
                    print_events([e for e in batch if accept(e)], json_)
                    last = batch[-1].position
                else:
                    time.sleep(interval)
        except KeyboardInterrupt:
            return


# ---- replay -------------------------------------------------------------------------------------


@app.command()
def replay(
    aggregate_id: str,
    to_version: Annotated[
        int | None, typer.Option("--to-version", help="stop after this version")
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="state at this ISO-8601 time")
    ] = None,
    json_: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rebuild an aggregate's state from its events and print it."""
    from .replay import replay as do_replay

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


# ---- projections --------------------------------------------------------------------------------


@projections_app.command("status")
def projections_status(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Name, position, lag and status of every projection."""
    with lightning() as lt:
        statuses = lt.projections.statuses()
        if json_:
            for s in statuses:
                sys.stdout.write(json.dumps(s.__dict__) + "\n")
            return
        table = Table("name", "position", "lag", "status", "error")
        for s in statuses:
            table.add_row(s.name, str(s.position), str(s.lag), s.status, s.error or "")
        out.print(table)


@projections_app.command("rebuild")
def projections_rebuild(name: str) -> None:
    """Empty one projection and re-apply the whole event log to it.

    Stop the processes that run this projection first (serve on the embedded default, or
    `worker projections`); they resume from the rebuilt position when started again."""
    with lightning() as lt:
        if name not in lt.projections.names():
            raise NotFound(
                f"no projection {name!r}; choose one of {', '.join(lt.projections.names())}"
            )
        position = lt.projections.rebuild(name)
        err.print(f"rebuilt {name} up to position {position}")


# ---- db -----------------------------------------------------------------------------------------


@contextmanager
def backend() -> Iterator[Backend]:
    try:
        opened = open_backend(Settings().database_url)
    except LightningError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False)
        raise typer.Exit(EXIT_CODES.get(exc.code, 1)) from None
    except Exception as exc:
        err.print(
            f"[red]error[/red] (UNAVAILABLE): cannot open the database: {exc}", highlight=False
        )
        raise typer.Exit(6) from None
    try:
        yield opened
    except LightningError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.message}", highlight=False)
        raise typer.Exit(EXIT_CODES.get(exc.code, 1)) from None
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
    from .services import SYSTEM, Context

    with lightning() as lt:
        result = lt.api_keys.issue(Context(SYSTEM), name=name, role="admin")
        err.print(f"admin key {result.key.id} created; its secret (shown once):")
        sys.stdout.write(f"{result.secret}\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
