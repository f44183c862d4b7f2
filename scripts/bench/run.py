"""The bench suite in one command: runs the scenarios, then writes the README's results table.

    .venv/bin/python scripts/bench/run.py [scenario ...] [--runs 3] [--quick] [--readme-only]

A scenario is a module ``scripts/bench/<name>.py`` exposing ``main(argv) -> int`` that writes
``docs/bench/<name>.json`` (and a PNG chart) through ``common.write``. Each one runs in its own
Python process, one after another, so no scenario's state (pools, threads, caches, load) is left
for the next; a failing scenario is reported and the suite goes on, and a scenario whose file does
not exist yet is reported as missing. ``--runs`` is passed to every scenario; ``--quick`` passes
each one's smaller sizes (``QUICK``; an option a scenario does not offer is left out and said so)
and one run unless ``--runs`` is given. Then every ``docs/bench/*.json`` — also those of scenarios
not run this time — is read and the README's table between ``<!-- bench:begin -->`` and
``<!-- bench:end -->`` is written again; ``--readme-only`` does only that.

The charts need matplotlib (``.venv/bin/pip install -e '.[bench]'``, with py-spy for profiles).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import INSTALL_HINT, QUICK_ENV, RESULTS, ROOT, log

HERE = Path(__file__).resolve().parent
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

SCENARIOS = ("append", "api", "lag", "rebuild", "webhooks")
# Always passed: the suite measures on PostgreSQL.
DEFAULTS: dict[str, list[str]] = {"webhooks": ["--backend", "postgres"]}
# --quick: (option, value or None for a flag). Options a scenario lacks are dropped at run time
# (its --help is asked).
QUICK: dict[str, list[tuple[str, str | None]]] = {
    "append": [("--commands", "300")],
    "api": [("--duration", "5")],
    "lag": [("--commands", "300"), ("--rate-seconds", "2")],
    "rebuild": [("--events", "5000"), ("--stock-events", "1000,2000")],
    "webhooks": [("--events", "300"), ("--commands", "50")],
}
# Runs the module's main(argv) whether or not it has a ``__main__`` block.
BOOT = (
    "import importlib, sys; sys.path.insert(0, sys.argv[1]); name = sys.argv[2];"
    " sys.argv = [sys.argv[1] + '/' + name + '.py', *sys.argv[3:]];"
    " sys.exit(importlib.import_module(name).main(sys.argv[1:]))"
)


@dataclass
class Outcome:
    scenario: str
    status: str  # ok, failed (exit N), missing, interrupted
    seconds: float = 0.0
    dropped: tuple[str, ...] = ()


def command(scenario: str, argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-c", BOOT, str(HERE), scenario, *argv]


def options_of(scenario: str) -> set[str] | None:
    """The options the scenario's parser takes, from its --help (None if it would not say)."""
    done = subprocess.run(
        command(scenario, ["--help"]), capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        return None
    return set(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", done.stdout))


def arguments(scenario: str, runs: int, quick: bool) -> tuple[list[str], tuple[str, ...]]:
    """The scenario's argv, and the quick options it does not have."""
    wanted: list[tuple[str, str | None]] = [("--runs", str(runs))]
    if quick:
        wanted += QUICK.get(scenario, [])
    offered = options_of(scenario)
    argv, dropped = list(DEFAULTS.get(scenario, [])), []
    for option, value in wanted:
        if offered is not None and option not in offered:
            dropped.append(option)
            continue
        argv += [option] if value is None else [option, value]
    return argv, tuple(dropped)


def run_scenario(scenario: str, runs: int, quick: bool) -> Outcome:
    if not (HERE / f"{scenario}.py").exists():
        log(f"== {scenario}: missing (no scripts/bench/{scenario}.py yet)")
        return Outcome(scenario, "missing")
    argv, dropped = arguments(scenario, runs, quick)
    if dropped:
        log(f"== {scenario}: has no {', '.join(dropped)}; running without")
    log(f"== {scenario}: scripts/bench/{scenario}.py {' '.join(argv)}")
    started = time.perf_counter()
    env = os.environ | {"PYTHONUNBUFFERED": "1", QUICK_ENV: "1" if quick else ""}
    process = subprocess.Popen(command(scenario, argv), cwd=ROOT, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # the scenario got the SIGINT too: let it clean up
        process.wait()
        return Outcome(scenario, "interrupted", time.perf_counter() - started, dropped)
    status = "ok" if code == 0 else f"failed (exit {code})"
    return Outcome(scenario, status, time.perf_counter() - started, dropped)


# ---- the README's table -------------------------------------------------------------------------


def results(directory: Path = RESULTS) -> list[dict[str, Any]]:
    """Every scenario's JSON, the suite's order first, then any other by name."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        try:
            document = json.loads(path.read_text())
            document.setdefault("scenario", path.stem)
            documents.append(document)
        except (OSError, ValueError) as exc:
            log(f"skipping {path}: {exc}")
    order = {name: i for i, name in enumerate(SCENARIOS)}
    return sorted(documents, key=lambda d: (order.get(d["scenario"], len(order)), d["scenario"]))


def number(value: float | None, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:{'+' if signed else ''},.{digits}f}"


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_row(scenario: str, row: dict[str, Any]) -> str:
    unit, target = row.get("unit", ""), row.get("target", "")
    signed = "+" in target
    baseline = ""
    if row.get("baseline") is not None:
        baseline = f"{number(row['baseline'])} {unit}"
        if row.get("baseline_name"):
            baseline = f"{row['baseline_name']}: {baseline}"
    ratio = "" if row.get("ratio") is None else f"{row['ratio']:.2f}x"
    met = {None: "", True: "yes", False: "**no**"}[row.get("met")]
    cells = [scenario, row["name"], f"{number(row['ours'], signed)} {unit}", baseline, ratio]
    return "| " + " | ".join(cell(c) for c in [*cells, target, met]) + " |"


_PACKAGES = ("eventsourcing", "psycopg", "aio-pika", "litestar", "strawberry-graphql")
_PLACED = {"cpus", "platform", "python", "database", "load_at_start", "commit", "when", *_PACKAGES}


def machine_line(document: dict[str, Any]) -> str:
    """Cores, platform, versions (and what else the scenario described), load, commit, date."""
    m: dict[str, str] = document.get("machine", {})
    versions = ", ".join(f"{k} {m[k]}" for k in _PACKAGES if m.get(k, "-") != "-")
    extra = ", ".join(f"{k} {v}" for k, v in m.items() if k not in _PLACED)
    parts = [
        f"{m.get('cpus', '?')} CPUs, {m.get('platform', '?')}, Python {m.get('python', '?')}",
        m.get("database", ""),
        versions,
        extra,
        f"load at start {m.get('load_at_start', '?')}",
        f"commit `{m.get('commit', '?')}`",
        m.get("when", ""),
        f"medians of {document.get('runs', '?')} run(s)",
        "**quick sizes** (`--quick`: a check, not figures to quote)"
        if document.get("quick")
        else "",
    ]
    return f"- **{document['scenario']}**: " + "; ".join(p for p in parts if p)


def section(documents: Sequence[dict[str, Any]], directory: Path = RESULTS) -> str:
    lines = [
        BEGIN,
        "<!-- written by scripts/bench/run.py from docs/bench/*.json; edits here are lost -->",
        "",
    ]
    if not documents:
        return "\n".join([*lines, "No results yet: run `scripts/bench/run.py`.", "", END])
    lines += [
        "| scenario | figure | ours | baseline | ratio | target | met |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for document in documents:
        lines += [table_row(document["scenario"], row) for row in document.get("rows", [])]
    lines += ["", "Measured on:", ""]
    lines += [machine_line(document) for document in documents]
    charts = [d["scenario"] for d in documents if (directory / f"{d['scenario']}.png").exists()]
    if charts:
        lines.append("")
    for name in charts:
        path = (directory / f"{name}.png").relative_to(ROOT).as_posix()
        lines.append(f"![{name}: ours against the baseline]({path})")
    return "\n".join([*lines, "", END])


def write_readme(readme: Path = README, directory: Path = RESULTS) -> bool:
    """Replace what stands between the markers; False if the README has no markers."""
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        log(f"{readme}: no {BEGIN} ... {END} markers; the table was not written")
        return False
    documents = results(directory)
    updated = text[:start] + section(documents, directory) + text[end + len(END) :]
    if updated != text:
        readme.write_text(updated)
    names = ", ".join(d["scenario"] for d in documents) or "none"
    log(f"README: table written from {len(documents)} result(s) ({names})")
    return True


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the bench scenarios (each in its own process) and write the README's"
        " results table from docs/bench/*.json.",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"some of {', '.join(SCENARIOS)} (all)"
    )
    parser.add_argument("--runs", type=int, help="repetitions per scenario (3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="each scenario's smaller sizes")
    parser.add_argument(
        "--readme-only", action="store_true", help="only write the README's table again"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {SCENARIOS}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be positive")
    args.scenarios = args.scenarios or list(SCENARIOS)
    args.runs = args.runs or (1 if args.quick else 3)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.readme_only:
        return 0 if write_readme() else 1
    try:
        import matplotlib  # noqa: F401  (the scenarios draw their charts with it)
    except ImportError:
        log(f"the bench suite draws charts with matplotlib: {INSTALL_HINT}")
        return 2
    outcomes = []
    for scenario in args.scenarios:
        outcomes.append(run_scenario(scenario, args.runs, args.quick))
        if outcomes[-1].status == "interrupted":
            break
    log("== summary")
    for o in outcomes:
        note = f"; without {', '.join(o.dropped)}" if o.dropped else ""
        log(f"   {o.scenario:<9} {o.status:<18} {o.seconds:6.0f} s{note}")
    written = write_readme()
    failed = any(o.status not in ("ok", "missing") for o in outcomes)
    return 1 if failed or not written else 0


if __name__ == "__main__":
    sys.exit(main())
