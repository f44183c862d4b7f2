"""Applied commands (issue 12, item 2), on SQLite and PostgreSQL: a command's row commits with its
events or not at all, and a command id is applied once per principal, however it is repeated."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest

from lightning.domain.errors import ConcurrencyConflict
from lightning.store import (
    CommandRecord,
    Envelope,
    EventStore,
    PostgresBackend,
    RepeatedCommand,
    open_backend,
)
from lightning.store.migrations import Migrator, migrations_dir

from ..conftest import POSTGRES_ADMIN_URL

ALICE, BOB = "key:alice", "key:bob"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def events(
    aggregate_id: UUID, count: int = 1, *, after: int = 0, command_id: UUID | None = None
) -> list[Envelope]:
    return [
        Envelope(
            id=uuid4(),
            type="probe.recorded",
            aggregate_type="probe",
            aggregate_id=aggregate_id,
            version=after + i,
            position=0,
            occurred_at=AT,
            actor="system",
            correlation_id=uuid4(),
            command_id=command_id,
            data={"n": after + i},
        )
        for i in range(1, count + 1)
    ]


def command(principal: str, aggregate_id: UUID, command_id: UUID | None = None) -> CommandRecord:
    return CommandRecord(principal, command_id or uuid4(), aggregate_id)


@contextmanager
def open_store(
    url: str, *, folder: Path | None = None, on_commit: Callable[[int], None] | None = None
) -> Iterator[EventStore]:
    backend = open_backend(url)
    Migrator(backend, folder).migrate()
    if isinstance(backend, PostgresBackend):
        backend.schema_ready()
    store = EventStore(backend, on_commit=on_commit)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    with open_store(database_url) as opened:
        yield opened


def test_a_command_is_recorded_with_its_events(store: EventStore) -> None:
    agg, cmd = uuid4(), uuid4()
    stored = store.append(events(agg, 3, command_id=cmd), command(ALICE, agg, cmd))
    assert store.command(ALICE, cmd) == CommandRecord(ALICE, cmd, agg, stored[-1].position)
    assert [e.command_id for e in store.load(agg)] == [cmd] * 3
    assert store.command(ALICE, uuid4()) is None


def test_events_that_fail_leave_no_command_row(store: EventStore) -> None:
    agg = uuid4()
    store.append(events(agg), command(ALICE, agg))
    loser = command(ALICE, agg)
    with pytest.raises(ConcurrencyConflict):
        store.append(events(agg), loser)  # version 1 again
    assert store.command(ALICE, loser.command_id) is None


def test_a_repeat_appends_nothing_and_answers_the_first_result(store: EventStore) -> None:
    first_agg, cmd = uuid4(), uuid4()
    stored = store.append(events(first_agg, 2), command(ALICE, first_agg, cmd))
    first = CommandRecord(ALICE, cmd, first_agg, stored[-1].position)
    top = store.max_position()

    other_agg = uuid4()  # decided again, e.g. with a fresh id: only the row can refuse it
    with pytest.raises(RepeatedCommand) as repeat:
        store.append(events(other_agg), command(ALICE, other_agg, cmd))
    assert repeat.value.first == first
    assert store.load(other_agg) == []

    # decided again on the same state: its events conflict too, and it still is a repeat
    with pytest.raises(RepeatedCommand) as same:
        store.append(events(first_agg, 2), command(ALICE, first_agg, cmd))
    assert same.value.first == first

    # decided again on the newer state: only the row conflicts
    with pytest.raises(RepeatedCommand):
        store.append(events(first_agg, after=2), command(ALICE, first_agg, cmd))
    assert store.max_position() == top and len(store.load(first_agg)) == 2


def test_the_same_command_id_for_two_principals_is_two_commands(store: EventStore) -> None:
    cmd, a, b = uuid4(), uuid4(), uuid4()
    at_a = store.append(events(a), command(ALICE, a, cmd))[-1].position
    at_b = store.append(events(b), command(BOB, b, cmd))[-1].position
    assert store.command(ALICE, cmd) == CommandRecord(ALICE, cmd, a, at_a)
    assert store.command(BOB, cmd) == CommandRecord(BOB, cmd, b, at_b)


def test_concurrent_repeats_of_one_command_apply_it_once(store: EventStore) -> None:
    for _ in range(5):
        cmd, barrier = uuid4(), threading.Barrier(8)

        def attempt(_: int, cmd: UUID = cmd, barrier: threading.Barrier = barrier) -> object:
            agg = uuid4()  # each attempt decided on its own: a new aggregate id
            barrier.wait()
            try:
                return store.append(events(agg), command(ALICE, agg, cmd))[-1]
            except RepeatedCommand as exc:
                return exc

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(8)))
        applied = [r for r in results if isinstance(r, Envelope)]
        repeats = [r for r in results if isinstance(r, RepeatedCommand)]
        assert len(applied) == 1 and len(repeats) == 7
        winner = CommandRecord(ALICE, cmd, applied[0].aggregate_id, applied[0].position)
        assert {r.first for r in repeats} == {winner} and store.command(ALICE, cmd) == winner


@contextmanager
def writes_held(store: EventStore) -> Iterator[None]:
    """Hold the events table's write lock, so that appends queue up in the group-commit writer
    and go into one batch once it is released."""
    with store.backend.transaction() as tx:  # SQLite: BEGIN IMMEDIATE takes the write lock
        if isinstance(store.backend, PostgresBackend):
            tx.execute("LOCK TABLE stored_events IN EXCLUSIVE MODE")
        yield


def queued_in_one_batch(store: EventStore, appends: list[Callable[[], object]]) -> list[object]:
    """Run ``appends`` concurrently so that the writer commits them in one batch: a first
    append waits for the held write lock alone while the others queue up behind it."""

    def run(append: Callable[[], object]) -> object:
        try:
            return append()
        except RepeatedCommand as exc:
            return exc

    agg = uuid4()
    with ThreadPoolExecutor(len(appends) + 1) as pool:
        with writes_held(store):
            pool.submit(store.append, events(agg))
            time.sleep(0.2)
            futures = [pool.submit(run, append) for append in appends]
            time.sleep(0.5)
        return [f.result() for f in futures]


def test_distinct_commands_in_one_batch_each_get_their_position(database_url: str) -> None:
    commits: list[int] = []
    wanted = [(uuid4(), 1 + i % 3, ALICE if i % 2 else BOB, uuid4()) for i in range(20)]
    with open_store(database_url, on_commit=commits.append) as store:
        results = queued_in_one_batch(
            store,
            [
                lambda agg=agg, n=n, who=who, cmd=cmd: store.append(
                    events(agg, n), CommandRecord(who, cmd, agg)
                )
                for agg, n, who, cmd in wanted
            ],
        )
        assert len(commits) == 2  # the first append's batch, then all of these together
        for (agg, n, who, cmd), result in zip(wanted, results, strict=True):
            assert isinstance(result, list) and len(result) == n
            assert store.command(who, cmd) == CommandRecord(who, cmd, agg, result[-1].position)
            assert store.load(agg) == result


def test_a_repeat_in_a_batch_fails_alone(store: EventStore) -> None:
    cmd, aggs = uuid4(), [uuid4() for _ in range(5)]
    results = queued_in_one_batch(
        store,
        [
            lambda agg=agg, i=i: store.append(
                events(agg), command(ALICE, agg, cmd if i in (1, 3) else None)
            )
            for i, agg in enumerate(aggs)
        ],
    )
    applied, repeat = results[1], results[3]  # in queue order, most likely; either way:
    if isinstance(applied, RepeatedCommand):
        applied, repeat = repeat, applied
    assert isinstance(applied, list) and isinstance(repeat, RepeatedCommand)
    assert repeat.first == CommandRecord(ALICE, cmd, applied[0].aggregate_id, applied[-1].position)
    assert all(isinstance(results[i], list) for i in (0, 2, 4))
    assert sum(len(store.load(agg)) for agg in aggs) == 4


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    request.getfixturevalue("postgres_server")
    name = f"lightning_old_{uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rpartition("/")[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_an_old_database_migrates_in_place(unmigrated_url: str, tmp_path: Path) -> None:
    old = tmp_path / "event_store"
    old.mkdir()
    for path in migrations_dir().glob("*.sql"):
        if int(path.name[:4]) < 9:  # the schema before applied_commands
            shutil.copy(path, old / path.name)
    agg = uuid4()
    with open_store(unmigrated_url, folder=old) as before:
        written = before.append(events(agg, 2))
    with open_store(unmigrated_url) as after:
        assert after.load(agg) == written  # no command id: read as it was written
        assert all(e.command_id is None for e in written)
        cmd = uuid4()
        position = after.append(events(agg, after=2), command(ALICE, agg, cmd))[-1].position
        assert after.command(ALICE, cmd) == CommandRecord(ALICE, cmd, agg, position)
        with pytest.raises(RepeatedCommand):
            after.append(events(agg, after=3), command(ALICE, agg, cmd))
