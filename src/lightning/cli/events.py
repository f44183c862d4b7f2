"""``lightning events list|show|tail``: read the event log, as clients see it (DESIGN §3:
the public envelope, without secret hashes)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from ..domain.errors import NotFound
from ..domain.event_types import TypeFilter, matches
from ..store.envelope import Envelope, Undecodable, format_time
from .common import POSITION_MAX, lightning, out, parse_id, parse_time

app = typer.Typer(help="Read the event log.", no_args_is_help=True)

TYPE_HELP = "exact type, <aggregate>.* or * (every public type); repeatable"


def print_events(envelopes: list[Envelope], as_json: bool) -> None:
    if as_json:
        for e in envelopes:
            sys.stdout.write(e.public_json() + "\n")
        sys.stdout.flush()
        return
    table = Table("position", "occurred_at", "type", "aggregate_id", "v", "actor")
    for e in envelopes:
        table.add_row(
            str(e.position),
            format_time(e.occurred_at),
            f"{e.type} (undecodable: {e.error})" if isinstance(e, Undecodable) else e.type,
            str(e.aggregate_id),
            str(e.version),
            e.actor,
        )
    out.print(table)


@app.command("list")
def events_list(
    json_: Annotated[bool, typer.Option("--json", help="one envelope per line")] = False,
    type_: Annotated[list[str] | None, typer.Option("--type", help=TYPE_HELP)] = None,
    aggregate: Annotated[str | None, typer.Option(help="only this aggregate id")] = None,
    since: Annotated[str | None, typer.Option(help="a position, or an ISO-8601 time")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many")] = 100,
) -> None:
    """List events, oldest first."""
    with lightning() as lt:
        types = TypeFilter.parse(type_, field="--type")
        after, from_time = 0, None
        if since is not None:
            if since.isdigit():
                after = min(int(since), POSITION_MAX)
            else:
                from_time = parse_time(since)
        source = lt.store.load(parse_id(aggregate)) if aggregate else lt.store.iterate(after)
        found: list[Envelope] = []
        for e in source:
            if (
                e.position > after
                and matches(types, e.type)
                and (from_time is None or e.occurred_at >= from_time)
            ):
                found.append(e)
                if len(found) >= limit:
                    break
        print_events(found, json_)


@app.command("show")
def events_show(position: Annotated[int, typer.Argument(min=1, max=POSITION_MAX)]) -> None:
    """Print one event (its envelope as JSON)."""
    with lightning() as lt:
        envelope = lt.store.get(position)
        if envelope is None:
            raise NotFound(f"no event at position {position}")
        sys.stdout.write(json.dumps(envelope.public(), indent=2) + "\n")


@app.command("tail")
def events_tail(
    json_: Annotated[bool, typer.Option("--json")] = False,
    type_: Annotated[list[str] | None, typer.Option("--type", help=TYPE_HELP)] = None,
    after: Annotated[
        int | None,
        typer.Option(min=0, max=POSITION_MAX, help="start after this position (default: now)"),
    ] = None,
    interval: Annotated[float, typer.Option(min=0.05, max=60, help="poll interval, seconds")] = 0.5,
) -> None:
    """Follow the event log until interrupted."""
    with lightning() as lt:
        types = TypeFilter.parse(type_, field="--type")
        last = lt.store.max_position() if after is None else after
        try:
            while True:
                batch = lt.store.read(last, 500)
                if batch:
                    print_events([e for e in batch if matches(types, e.type)], json_)
                    last = batch[-1].position
                else:
                    time.sleep(interval)
        except KeyboardInterrupt:
            return
