"""``lightning sagas …`` (saga instances: how each stands, and what an operator does about one)
and ``lightning workflows …`` (a workflow as a document: export and import)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..domain.errors import NotFound, ValidationFailed
from ..domain.limits import REASON_MAX
from ..domain.workflows.document import document_json
from ..sagas import STATUSES, SagaView
from ..services import Context
from ..store.envelope import format_time
from .common import err, fail, lightning, operator, parse_id
from .consumers import report_retry, say

sagas_app = typer.Typer(help="Inspect saga instances; retry or abort one.", no_args_is_help=True)
workflows_app = typer.Typer(help="Export and import workflows as documents.", no_args_is_help=True)

TypeOption = Annotated[
    str | None, typer.Option("--type", help="the saga type (workflow_publish, key_lifecycle, …)")
]
Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]
DOCUMENT_MAX_BYTES = 4 * 1024 * 1024


def _time(value: Any) -> str:
    return "" if value is None else format_time(value)


def view_json(view: SagaView) -> dict[str, Any]:
    return {
        "type": view.type,
        "id": view.id,
        "status": view.status,
        "correlation_id": view.correlation_id,
        "steps": [
            {"name": s.name, "status": s.status, "at": _time(s.at) or None, "error": s.error}
            for s in view.steps
        ],
        "next_timer_at": _time(view.next_timer_at) or None,
        "failure_reason": view.failure_reason,
        "started_position": view.started_position,
        "position": view.position,
        "started_at": format_time(view.started_at),
        "updated_at": format_time(view.updated_at),
        "state": view.state,
    }


@sagas_app.command("list")
def sagas_list(
    type_: TypeOption = None,
    status: Annotated[
        str | None, typer.Option(help=f"only this status: {', '.join(STATUSES)}")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="at most this many")] = 50,
    json_: Json = False,
) -> None:
    """Saga instances, newest first."""
    with lightning() as lt:
        page, more = lt.sagas.listed(
            type=type_, status=None if status is None else status.upper(), first=limit
        )
        views = [view for _, view in page]
        if json_:
            for view in views:
                sys.stdout.write(json.dumps(view_json(view)) + "\n")
            return
        # One line each, never cut: ids are for copying into `sagas show|retry|abort`.
        for v in views:
            done = sum(s.status == "DONE" for s in v.steps)
            timer = f"  next timer {_time(v.next_timer_at)}" if v.next_timer_at else ""
            failure = f"  failure: {v.failure_reason}" if v.failure_reason else ""
            say(f"{v.type:<17} {v.id}  {v.status:<11} {done}/{len(v.steps)} steps{timer}{failure}")
        if more:
            err.print(f"more than {limit}: raise --limit or filter by --type / --status")
        elif not views:
            err.print("no saga instances")


@sagas_app.command("show")
def sagas_show(instance: str, type_: TypeOption = None, json_: Json = False) -> None:
    """One instance: its status, each step, its next timer and why it failed."""
    with lightning() as lt:
        views = lt.sagas.get(instance, type_)
        for view in views:
            if json_:
                sys.stdout.write(json.dumps(view_json(view)) + "\n")
                continue
            say(f"{view.type} {view.id}: {view.status}")
            say(f"  correlation {view.correlation_id}  started at position {view.started_position}")
            if view.next_timer_at is not None:
                say(f"  next timer at {_time(view.next_timer_at)}")
            if view.failure_reason:
                say(f"  failure: {view.failure_reason}")
            for step in view.steps:
                error = f"  ({step.error})" if step.error else ""
                say(f"  {step.status:<12} {step.name}{error}")


@sagas_app.command("retry")
def sagas_retry(
    instance: str,
    type_: TypeOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="apply in a transaction that is rolled back")
    ] = False,
) -> None:
    """Apply an instance's parked events again (after a fix). Exit 1 if one still fails."""
    with lightning() as lt:
        results = lt.retry_saga(instance, type_, dry_run=dry_run)
        if not results:
            raise NotFound(f"nothing is parked for saga {instance[:100]}")
        for result in results:
            report_retry(result, dry_run)
        if not all(r.ok for r in results):
            raise typer.Exit(1)


@sagas_app.command("abort")
def sagas_abort(
    instance: str,
    type_: TypeOption = None,
    reason: Annotated[str, typer.Option(help="why, for the log")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="yes, abort it")] = False,
) -> None:
    """Stop an instance and undo what it did: skip its parked events (recorded in the log), then
    fail its publication and detach its agents, or cancel its timers."""
    if not yes:
        raise fail(
            "BAD_USER_INPUT",
            "aborting skips the saga's parked events and undoes its work; add --yes to do it",
        )
    if len(reason) > REASON_MAX:
        raise fail("BAD_USER_INPUT", f"--reason has at most {REASON_MAX} characters")
    with lightning() as lt:
        aborted = lt.abort_saga(Context(operator()), instance, type_, reason)
        for p in aborted.skipped:
            say(f"skipped parked position {p.position} ({p.type})")
        for step in aborted.sent:
            say(f"sent: {step}")
        say(f"aborted {aborted.saga} {aborted.instance}")


# ---- workflows ----------------------------------------------------------------------------------


@workflows_app.command("export")
def workflows_export(
    workflow: str,
    file: Annotated[str, typer.Argument(help="where to write the document (- for stdout)")],
    version: Annotated[
        int | None, typer.Option(min=1, help="a requested version instead of the draft")
    ] = None,
) -> None:
    """Write a workflow's document (its name and graph; see docs/workflow.schema.json)."""
    with lightning() as lt:
        text = document_json(lt.workflows.export_document(parse_id(workflow), version))
        if file == "-":
            sys.stdout.write(text)
            return
        Path(file).write_text(text)
        err.print(f"wrote {file}")


@workflows_app.command("import")
def workflows_import(
    file: Annotated[str, typer.Argument(help="a document from `workflows export` (- for stdin)")],
) -> None:
    """Create a new workflow (a draft) from a document; prints its id."""
    with lightning() as lt:
        document = _read_document(file)
        result = lt.workflows.import_document(Context(operator()), document)
        err.print(f"imported workflow {result.workflow.name!r} at position {result.position}")
        sys.stdout.write(f"{result.workflow.id}\n")


def _read_document(file: str) -> object:
    try:
        raw = sys.stdin.buffer.read(DOCUMENT_MAX_BYTES + 1) if file == "-" else _read(Path(file))
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}") from None
    if len(raw) > DOCUMENT_MAX_BYTES:
        raise ValidationFailed(f"a workflow document is at most {DOCUMENT_MAX_BYTES:,} bytes")
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise ValidationFailed(f"{file} is not JSON: {str(exc)[:200]}") from None


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON number")


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(DOCUMENT_MAX_BYTES + 1)
