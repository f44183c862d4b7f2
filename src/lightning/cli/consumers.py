"""``lightning consumers …`` (every consumer kind) and ``lightning projections …`` (the read
models): status, parked events and what an operator does about them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..consumers import REBUILD_BATCH, HandlerStatus, ParkedEvent, ParkedFilter, RetryResult
from ..domain.consumers import REASON_MAX
from ..domain.errors import NotFound
from ..projections import KIND as PROJECTIONS
from ..projections import rebuild
from ..services import Context
from .common import err, fail, lightning, operator, out

consumers_app = typer.Typer(
    help="Inspect consumers (projection builders, …) and deal with parked events.",
    no_args_is_help=True,
)
projections_app = typer.Typer(help="Inspect and rebuild read models.", no_args_is_help=True)

Consumer = Annotated[str | None, typer.Option(help="only this consumer kind (projections, …)")]
HandlerOption = Annotated[str | None, typer.Option(help="only this handler (a projection, …)")]
Aggregate = Annotated[str | None, typer.Option(help="only this aggregate (the parked key)")]
Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def say(*parts: str) -> None:
    """A plain line on stdout: no markup, no highlighting, never wrapped."""
    out.print(*parts, highlight=False, soft_wrap=True, markup=False)


def print_statuses(statuses: list[HandlerStatus], as_json: bool) -> None:
    if as_json:
        for s in statuses:
            sys.stdout.write(json.dumps(asdict(s)) + "\n")
        return
    table = Table("consumer", "name", "position", "lag", "status", "parked", "error")
    for s in statuses:
        table.add_row(
            s.kind, s.name, str(s.position), str(s.lag), s.status, str(s.parked), s.error or ""
        )
    out.print(table)


def print_parked(
    parked: list[ParkedEvent], counts: dict[tuple[str, str, str], int], as_json: bool
) -> None:
    """One block per parked key: the event that failed (with its error), then the ones waiting
    behind it, in order; a last line if --limit cut the list."""
    if as_json:
        for p in parked:
            sys.stdout.write(json.dumps(asdict(p)) + "\n")
        return
    key = None
    for p in parked:
        if (p.consumer, p.handler, p.key) != key:
            key = (p.consumer, p.handler, p.key)
            say(f"{p.consumer}/{p.handler} {p.key}: {counts.get(key, 0)} parked event(s)")
        state = f"failed {p.attempts} time(s): {p.error}" if p.error else "waiting behind it"
        say(f"  position {p.position:<10} {p.type:<32} parked {p.parked_at}  {state}")


# ---- consumers ----------------------------------------------------------------------------------


@consumers_app.command("status")
def consumers_status(consumer: Consumer = None, json_: Json = False) -> None:
    """Position, lag, status and parked events of every handler of every consumer kind."""
    with lightning() as lt:
        print_statuses(lt.consumers.statuses(consumer), json_)


@consumers_app.command("parked")
def consumers_parked(
    consumer: Consumer = None,
    handler: HandlerOption = None,
    aggregate: Aggregate = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="at most this many")] = 1_000,
    json_: Json = False,
) -> None:
    """Parked events, by consumer, handler and key, oldest first."""
    with lightning() as lt:
        which = ParkedFilter(consumer, handler, aggregate)
        parked = lt.consumers.parked(which, limit)
        print_parked(parked, lt.consumers.parked_counts(which), json_)
        if not parked and not json_:
            err.print("nothing is parked")


@consumers_app.command("retry-parked")
def consumers_retry_parked(
    consumer: Consumer = None,
    handler: HandlerOption = None,
    aggregate: Aggregate = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="apply in a transaction that is rolled back")
    ] = False,
) -> None:
    """Apply parked events again (after a fix), each key's in order, in one transaction per
    key; the ones that apply are unparked. Exit 1 if any still fails."""
    with lightning() as lt:
        which = ParkedFilter(consumer, handler, aggregate)
        results = lt.consumers.retry_parked(which, dry_run=dry_run)
        if not results:
            if aggregate is not None:
                raise NotFound(f"nothing is parked for {aggregate}")
            err.print("nothing is parked")
            return
        for result in results:
            report_retry(result, dry_run)
        if not all(r.ok for r in results):
            raise typer.Exit(1)


def positions_text(events: list[ParkedEvent]) -> str:
    shown = [str(e.position) for e in events]
    return ", ".join(shown) if len(shown) <= 10 else f"{shown[0]} … {shown[-1]}"


def report_retry(result: RetryResult, dry_run: bool) -> None:
    where = f"{result.consumer}/{result.handler} {result.key}"
    if not result.events:
        say(f"{where}: nothing parked any more")
        return
    done = result.events[: result.applied]
    if done:
        verb = "would apply" if dry_run else "applied"
        say(f"{where}: {verb} {len(done)} event(s) ({positions_text(done)})")
    if not result.ok:
        left = result.events[result.applied :]
        verb = "would still fail" if dry_run else "still fails"
        first = f" at position {left[0].position}" if left else ""
        say(f"{where}: {verb}{first}: {result.error}; {len(left)} event(s) stay parked")
    if dry_run:
        say("  before:", json.dumps(result.before, default=str))
        say("  after: ", json.dumps(result.after, default=str))


@consumers_app.command("skip-parked")
def consumers_skip_parked(
    aggregate: Annotated[str, typer.Option(help="the parked key (aggregate) to skip")],
    consumer: Consumer = None,
    handler: HandlerOption = None,
    reason: Annotated[str, typer.Option(help="why, for the log")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="yes, skip them")] = False,
) -> None:
    """Give up on an aggregate's parked events: the handler never applies them. Recorded as
    consumer.event_skipped with you as the actor; later events of the aggregate flow again."""
    if not yes:
        raise fail(
            "BAD_USER_INPUT",
            "skipping means these events are never applied by that handler; add --yes to do it",
        )
    if len(reason) > REASON_MAX:
        raise fail("BAD_USER_INPUT", f"--reason has at most {REASON_MAX} characters")
    with lightning() as lt:
        record = lt.skip_recorder(Context(operator()), reason)
        skipped = lt.consumers.skip_parked(ParkedFilter(consumer, handler, aggregate), record)
        if not skipped:
            raise NotFound(f"nothing is parked for {aggregate}")
        for p in skipped:
            say(f"skipped {p.consumer}/{p.handler} {p.key} position {p.position} ({p.type})")


# ---- projections --------------------------------------------------------------------------------


@projections_app.command("status")
def projections_status(json_: Json = False) -> None:
    """Name, position, lag, status and parked events of every read model."""
    with lightning() as lt:
        print_statuses(lt.consumers.statuses(PROJECTIONS), json_)


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="the read model to rebuild")] = None,
    all_: Annotated[bool, typer.Option("--all", help="rebuild every read model")] = False,
    batch: Annotated[
        int, typer.Option(min=1, max=50_000, help="events per transaction")
    ] = REBUILD_BATCH,
) -> None:
    """Empty one read model (or --all of them), forget what they parked and apply the whole
    event log to them again, in one pass over the log however many are rebuilt.

    Run it with the processes that apply them stopped (serve on the embedded default, or
    `worker projections`): they would otherwise apply the log a second time beside it (safely,
    taking turns batch by batch, but twice the work). They resume from the rebuilt position
    when started again. A rebuild interrupted midway (^C) leaves each read model consistent
    with its own position: they carry it on from there when started, and running it again
    starts it over."""
    if (name is None) == (not all_):
        raise fail("BAD_USER_INPUT", "name one read model, or give --all (not both)")
    with lightning() as lt, rebuild_progress() as advanced:
        rebuilt = rebuild(lt.consumers, name, batch_size=batch, on_progress=advanced)
    what = "every read model" if name is None else name
    err.print(
        f"rebuilt {what} up to position {rebuilt.position} in {rebuilt.seconds:.1f} s"
        f" ({rebuilt.head / max(rebuilt.seconds, 1e-9):,.0f} events/s)",
        highlight=False,
    )


@contextmanager
def rebuild_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr: events done of the log's head, rate and time left."""
    progress = Progress(
        TextColumn("rebuilding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
    task = progress.add_task("rebuild", total=None, rate="")
    started = time.monotonic()

    def advanced(position: int, head: int) -> None:
        rate = position / max(time.monotonic() - started, 1e-9)
        progress.update(task, completed=position, total=head, rate=f"{rate:,.0f} events/s")

    with progress:
        yield advanced
