"""Grammar fuzzing of the GraphQL API: nothing a client sends may answer HTTP 5xx or ``INTERNAL``.

Operations are generated from the schema with hypothesis-graphql: queries, mutations and
subscriptions (sent over plain HTTP, where the server must refuse them with a code), valid ones
and ones with a single schema violation, their arguments sometimes passed as variables, ids
drawn from seeded aggregates as well as garbage, times from year 1 to 9999 in every offset,
forged cursors, control characters and oversized strings. Each is sent as admin (the admin
secret), operator and viewer (API keys the script issues first with the admin token), and each
answer is checked: no HTTP 5xx, a JSON body, every GraphQL error with an ``extensions.code``,
and none ``INTERNAL``.

    .venv/bin/python scripts/fuzz.py                       # its own embedded server (temp SQLite)
    .venv/bin/python scripts/fuzz.py --url http://127.0.0.1:8000/graphql --token ADMIN -n 10000

It prints the operations sent, the HTTP status codes, the count of each failure kind and, per
kind, the shortest offending documents (with variables and the answer) of each distinct failure;
``--report FILE`` writes every failure as JSON lines. It exits 1 when any operation answered
HTTP 5xx or ``INTERNAL`` (or got no answer at all). The generator and the checks live in
``scripts/gqlfuzz/``; ``tests/e2e/test_fuzz.py`` runs them, bounded, in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import graphql
import httpx
from gqlfuzz import (
    KINDS,
    Campaign,
    embedded_server,
    fetch_schema,
    fuzz,
    operations,
    prepare,
    summary,
)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="GraphQL endpoint; default: start an embedded server")
    parser.add_argument("--token", help="the admin secret (required with --url)")
    parser.add_argument("-n", "--operations", type=int, default=1_000, help="how many to send")
    parser.add_argument("--seed", type=int, help="hypothesis seed, to repeat a run")
    parser.add_argument("--schema", type=Path, help="SDL file; default: introspect the server")
    parser.add_argument("--kinds", default=",".join(KINDS), help="query,mutation,subscription")
    parser.add_argument("--no-negative", action="store_true", help="valid operations only")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--examples", type=int, default=1, help="documents shown per failure")
    parser.add_argument("--report", type=Path, help="write every failure as JSON lines")
    parser.add_argument("--keep", action="store_true", help="keep the embedded server's directory")
    args = parser.parse_args(argv)
    if args.url and not args.token:
        parser.error("--url needs --token (the admin secret)")
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds takes some of {','.join(KINDS)}")
    return args


def _progress(every: int, started: float) -> Callable[[Campaign], None]:
    def report(campaign: Campaign) -> None:
        if campaign.sent % every == 0:
            rate = campaign.sent / (time.monotonic() - started)
            print(
                f"… {campaign.sent} sent ({rate:.0f}/s), 5xx {campaign.kinds['http_5xx']}, "
                f"INTERNAL {campaign.kinds['internal']}, no code {campaign.kinds['no_code']}",
                file=sys.stderr,
            )

    return report


def _campaign(args: argparse.Namespace, url: str, token: str) -> Campaign:
    with httpx.Client(timeout=args.timeout) as client:
        schema = (
            graphql.build_schema(args.schema.read_text())
            if args.schema
            else fetch_schema(client, url, token)
        )
        target = prepare(client, url, token)
        strategy = operations(schema, target.pool, args.kinds, negative=not args.no_negative)
        report = args.report.open("w") if args.report else contextlib.nullcontext()
        with report as out:
            campaign = Campaign(target, client, report=out)
            started = time.monotonic()
            fuzz(campaign, strategy, args.operations, args.seed, _progress(250, started))
        print(f"took {time.monotonic() - started:.0f} s", file=sys.stderr)
        return campaign


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if args.url:
        campaign = _campaign(args, args.url, args.token)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="lightning-fuzz-"))
        admin = secrets.token_urlsafe(24)
        with embedded_server(workdir, admin) as url:
            print(f"embedded server at {url} (files in {workdir})", file=sys.stderr)
            campaign = _campaign(args, url, admin)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(summary(campaign, args.examples))
    return 1 if campaign.serious else 0


if __name__ == "__main__":
    sys.exit(main())
