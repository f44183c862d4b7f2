"""``lightning webhooks …``: subscriptions, their deliveries with every attempt, and what an
operator does about them (redeliver one, recover what a subscription missed)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ..services import Context
from ..webhooks import STATUSES, DeliveryView, subscriptions_page
from .common import err, fail, lightning, operator, parse_id
from .consumers import say

webhooks_app = typer.Typer(
    help="Webhook subscriptions and deliveries: list, redeliver, recover.", no_args_is_help=True
)
SUBSCRIPTION_STATUSES = ("active", "paused", "disabled", "deleted")
Json = Annotated[bool, typer.Option("--json", help="one JSON object per line")]
Limit = Annotated[int, typer.Option(min=1, max=500, help="at most this many")]


@webhooks_app.command("list")
def webhooks_list(
    status: Annotated[
        str | None,
        typer.Option(help="active, paused, disabled or deleted (default: all but deleted)"),
    ] = None,
    limit: Limit = 100,
    json_: Json = False,
) -> None:
    """Subscriptions, oldest first."""
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise fail("BAD_USER_INPUT", f"--status is one of {', '.join(SUBSCRIPTION_STATUSES)}")
    with lightning() as lt:
        page = subscriptions_page(lt.store.backend, first=limit, after=None, status=status)
        for _, row in page.items:
            if json_:
                row = {**row, "event_types": json.loads(row["event_types"])}
                sys.stdout.write(json.dumps(row) + "\n")
                continue
            why = f"  ({row['disabled_reason']})" if row["disabled_reason"] else ""
            failing = f"  failing since {row['failing_since']}" if row["failing_since"] else ""
            types = ",".join(json.loads(row["event_types"]))
            say(f"{row['id']}  {row['status']:<8} {row['url']}  [{types}]{why}{failing}")
        if page.has_next:
            err.print(f"more than {limit}: raise --limit")
        elif not page.items:
            err.print("no webhook subscriptions")


def delivery_json(view: DeliveryView) -> dict[str, Any]:
    return {**view.row, "attempts": view.attempts}


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    subscription: Annotated[
        str | None, typer.Argument(help="a subscription id (default: all)")
    ] = None,
    status: Annotated[str | None, typer.Option(help=", ".join(STATUSES))] = None,
    limit: Limit = 50,
    json_: Json = False,
) -> None:
    """Deliveries, newest event first, each with its attempts (time, status, latency, error)."""
    with lightning() as lt:
        subscription_id = None if subscription is None else str(parse_id(subscription))
        page = lt.deliveries.listed(
            subscription_id=subscription_id,
            status=None if status is None else status.upper(),
            first=limit,
            after=None,
        )
        for _, view in page.items:
            if json_:
                sys.stdout.write(json.dumps(delivery_json(view)) + "\n")
                continue
            row = view.row
            upcoming = f"  next {row['next_attempt_at']}" if row["status"] == "PENDING" else ""
            say(
                f"{row['id']}  {row['status']:<9} @{row['position']} {row['event_type']}"
                f"  {row['attempts']} attempt(s){upcoming}"
            )
            for a in view.attempts:
                code = a["status_code"] if a["status_code"] is not None else "---"
                error = f"  {a['error']}" if a["error"] else ""
                say(f"    #{a['attempt']} {a['at']}  {code}  {a['latency_ms']:.1f} ms{error}")
        if page.has_next:
            err.print(f"more than {limit}: raise --limit or filter by --status")
        elif not page.items:
            err.print("no deliveries")


@webhooks_app.command("redeliver")
def webhooks_redeliver(delivery: str) -> None:
    """A new round of attempts for one delivery, the first at once (same webhook-id)."""
    with lightning() as lt:
        found = lt.redeliver_webhook(Context(operator()), parse_id(delivery))
        say(f"delivery {found} re-armed: a worker running `webhooks` sends it")


@webhooks_app.command("recover")
def webhooks_recover(
    subscription: str,
    since: Annotated[int, typer.Option(min=0, max=2**62, help="send again from this position on")],
) -> None:
    """Send again every event from --since on that the subscription matches now (read from the
    log: also what it missed while disabled)."""
    with lightning() as lt:
        found = lt.recover_webhooks(Context(operator()), parse_id(subscription), since)
        say(f"{found.deliveries} deliveries re-armed")
        if found.next_since is not None:
            say(f"stopped at the limit of one call: run again with --since {found.next_since}")
