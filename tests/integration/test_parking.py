"""A poison event parks its aggregate for one projection, never the consumer, never silently:
retried, then parked with every later event of the aggregate in order, while other aggregates
and projections carry on; retried after a fix (dry run first) or skipped on an operator's word.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from lightning import failpoints
from lightning.bootstrap import Lightning
from lightning.bus import Delivery
from lightning.consumers import Consumer, ConsumerKind, ParkedFilter, RetryPolicy, run_to_head
from lightning.domain.errors import Unavailable
from lightning.projections import KIND, all_projections
from lightning.projections.agents import AgentsProjection
from lightning.projections.api_keys import ApiKeysProjection
from lightning.projections.audit_log import AuditLogProjection
from lightning.services import Context, Principal
from lightning.store.backends import Tx
from lightning.store.envelope import Envelope
from lightning.store.outages import LostRace, is_retryable

from .test_projections import CTX, assert_agents_equal_fold_of_log, position, rows

GROK = {"provider": "grok", "model": "grok-code-fast-1"}
OPERATOR = Principal(actor="cli:tester", role="admin")


class FailsOn(AgentsProjection):
    """Fails on every event of one aggregate until healed (a bug fixed and deployed)."""

    def __init__(self, aggregate: UUID, error: Exception | None = None) -> None:
        self.aggregate = aggregate
        self.error = error or RuntimeError(f"cannot apply {aggregate}")
        self.healed = False
        self.calls = 0

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        self.calls += 1
        if not self.healed and any(e.aggregate_id == self.aggregate for e in envelopes):
            raise self.error
        super().apply_batch(tx, envelopes)


def consumer_with(app: Lightning, agents: AgentsProjection, retries: int = 2) -> Consumer:
    return Consumer(
        KIND,
        [agents, ApiKeysProjection(), AuditLogProjection()],
        app.consumers.tracking,
        app.store,
        policy=RetryPolicy(retries=retries, first_delay=0.001),
    )


def register(app: Lightning, name: str) -> UUID:
    return app.agents.register(CTX, name=name, **GROK).agent.id


def given_a_poisoned_aggregate(app: Lightning) -> tuple[UUID, FailsOn, Consumer]:
    register(app, "before")
    poisoned = register(app, "poisoned")
    failing = FailsOn(poisoned)
    consumer = consumer_with(app, failing)
    run_to_head(consumer)
    return poisoned, failing, consumer


def test_later_events_of_the_aggregate_wait_while_others_flow(lightning: Lightning) -> None:
    poisoned, _, consumer = given_a_poisoned_aggregate(lightning)
    lightning.agents.reconfigure(CTX, poisoned, temperature=1.5)
    after = register(lightning, "after")
    lightning.agents.retire(CTX, poisoned)
    run_to_head(consumer)

    head = lightning.store.max_position()
    assert {
        n: position(lightning, n) for n in ("agents", "api_keys", "audit_log")
    } == dict.fromkeys(("agents", "api_keys", "audit_log"), head)
    parked = lightning.consumers.parked(ParkedFilter())
    poisoned_events = [e for e in lightning.store.load(poisoned)]
    assert [(p.consumer, p.handler, p.key) for p in parked] == [
        (KIND, "agents", str(poisoned))
    ] * len(poisoned_events)
    assert [p.position for p in parked] == [e.position for e in poisoned_events]  # in order
    assert [p.type for p in parked] == [e.type for e in poisoned_events]
    first, *behind = parked
    assert first.attempts == 3 and "cannot apply" in (first.error or "")
    assert all(p.attempts == 0 and p.error is None for p in behind)
    # every other agent is there; the poisoned one is not; the other read models have it all
    agents = {r["id"] for r in rows(lightning, "agents")}
    assert str(after) in agents and str(poisoned) not in agents
    assert len(rows(lightning, "audit_log")) == head
    status = {s.name: s for s in lightning.consumers.statuses()}
    assert (status["agents"].status, status["agents"].parked) == ("degraded", len(parked))
    assert status["audit_log"].status == "running" and status["audit_log"].parked == 0


def test_consistent_with_a_parked_position_is_unavailable_and_says_why(
    lightning: Lightning,
) -> None:
    poisoned, _, _ = given_a_poisoned_aggregate(lightning)
    head = lightning.store.max_position()
    other = next(r["id"] for r in rows(lightning, "agents"))
    with pytest.raises(Unavailable, match=f"parked the events of {poisoned}"):
        lightning.consumers.wait_blocking(head, ["agents"], timeout=0.1)
    # an aggregate that is not parked, or a position before the parked one, is fine
    asyncio.run(lightning.consumers.wait(head, ["agents"], 0.1, key=other))
    first_parked = lightning.consumers.parked(ParkedFilter())[0].position
    lightning.consumers.wait_blocking(first_parked - 1, ["agents"], timeout=0.1)
    lightning.consumers.wait_blocking(head, ["audit_log", "api_keys"], timeout=0.1)


def test_retry_parked_dry_run_changes_nothing_then_heals(lightning: Lightning) -> None:
    poisoned, failing, consumer = given_a_poisoned_aggregate(lightning)
    lightning.agents.reconfigure(CTX, poisoned, temperature=1.5)
    run_to_head(consumer)
    before = rows(lightning, "agents")

    failing.healed = True  # the fix, in the process that retries
    consumers = lightning.consumers
    # the operator's process has the fixed code: stand it in for the registered kind
    consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [failing])
    [dry] = consumers.retry_parked(ParkedFilter(key=str(poisoned)), dry_run=True)
    assert dry.ok and [e.position for e in dry.events] == [
        e.position for e in lightning.store.load(poisoned)
    ]
    assert dry.before == [] and dry.after[0]["temperature"] == 1.5
    assert rows(lightning, "agents") == before  # nothing committed
    assert len(consumers.parked(ParkedFilter())) == 2

    [result] = consumers.retry_parked(ParkedFilter(key=str(poisoned)))
    assert result.ok
    assert consumers.parked(ParkedFilter()) == []
    # later events of the aggregate flow normally again
    lightning.agents.reconfigure(CTX, poisoned, temperature=0.3)
    run_to_head(consumer)
    assert_agents_equal_fold_of_log(lightning)
    assert {s.status for s in consumers.statuses(KIND)} == {"running"}


def test_retry_parked_that_still_fails_keeps_them_parked(lightning: Lightning) -> None:
    poisoned, failing, _ = given_a_poisoned_aggregate(lightning)
    lightning.consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [failing])  # the same bug
    [result] = lightning.consumers.retry_parked(ParkedFilter(key=str(poisoned)))
    assert not result.ok and "cannot apply" in (result.error or "")
    [parked] = lightning.consumers.parked(ParkedFilter())
    assert parked.attempts == 4  # one more
    assert str(poisoned) not in {r["id"] for r in rows(lightning, "agents")}


def test_skip_parked_records_the_skip_and_lets_later_events_flow(lightning: Lightning) -> None:
    poisoned, failing, consumer = given_a_poisoned_aggregate(lightning)
    [parked] = lightning.consumers.parked(ParkedFilter())
    record = lightning.skip_recorder(Context(OPERATOR), "bad data, accepted")
    skipped = lightning.consumers.skip_parked(ParkedFilter(key=str(poisoned)), record)
    assert [s.position for s in skipped] == [parked.position]
    assert lightning.consumers.parked(ParkedFilter()) == []
    [fact] = [e for e in lightning.store.iterate(0) if e.type == "consumer.event_skipped"]
    assert fact.aggregate_type == "consumer" and fact.actor == "cli:tester"
    assert fact.data == {
        "consumer": KIND,
        "handler": "agents",
        "aggregate": str(poisoned),
        "position": parked.position,
        "reason": "bad data, accepted",
    }
    # recording again (a rerun after a crash between recording and unparking) adds nothing
    assert record(KIND, skipped) is None
    # later events of the aggregate are applied again (by fixed code); the skipped
    # registration never was, so the agents read model has no row to reconfigure
    failing.healed = True
    lightning.agents.reconfigure(CTX, poisoned, temperature=1.5)
    run_to_head(consumer)
    assert str(poisoned) not in {r["id"] for r in rows(lightning, "agents")}
    assert lightning.consumers.parked(ParkedFilter()) == []


def busy() -> sqlite3.OperationalError:
    """As sqlite3 raises it when another process holds the write lock (with its result code)."""
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = 5  # SQLITE_BUSY
    return error


def test_outages_never_park(lightning: Lightning) -> None:
    poisoned = register(lightning, "victim")
    outage: Exception = (
        psycopg.OperationalError("server closed the connection unexpectedly")
        if lightning.store.backend.kind == "postgres"
        else busy()
    )
    failing = FailsOn(poisoned, outage)
    consumer = consumer_with(lightning, failing, retries=0)
    for _ in range(3):
        with pytest.raises(Exception) as raised:
            consumer.catch_up()
        assert is_retryable(raised.value)  # what the loops retry without spending anything
        consumer.reset()
    assert lightning.consumers.parked(ParkedFilter()) == []
    assert position(lightning, "audit_log") == 0  # the whole batch was abandoned, blaming nobody
    failing.healed = True
    run_to_head(consumer)
    assert_agents_equal_fold_of_log(lightning)


def test_a_constraint_violation_parks_like_any_fault(lightning: Lightning) -> None:
    poisoned = register(lightning, "constrained")
    violation = (
        psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
        if lightning.store.backend.kind == "postgres"
        else sqlite3.IntegrityError("UNIQUE constraint failed: agents.id")
    )
    run_to_head(consumer_with(lightning, FailsOn(poisoned, violation), retries=1))
    [parked] = lightning.consumers.parked(ParkedFilter())
    assert parked.key == str(poisoned) and parked.attempts == 2


def test_a_failing_handler_backs_off_while_the_others_carry_on(lightning: Lightning) -> None:
    poisoned = register(lightning, "slow-poison")
    now = [1000.0]
    consumer = Consumer(
        KIND,
        [FailsOn(poisoned), AuditLogProjection()],
        lightning.consumers.tracking,
        lightning.store,
        policy=RetryPolicy(retries=3, first_delay=10.0),
        clock=lambda: now[0],
    )
    consumer.catch_up()
    assert consumer.failing()["agents"].attempts == 1
    assert consumer.next_retry() == 1010.0
    assert position(lightning, "agents") < lightning.store.load(poisoned)[0].position
    status = {s.name: s for s in lightning.consumers.statuses()}
    assert status["agents"].status == "retrying" and "attempt 1 of 4" in (
        status["agents"].error or ""
    )
    more = register(lightning, "meanwhile")
    consumer.catch_up()  # not due: the failing handler is left alone, the other carries on
    assert consumer.failing()["agents"].attempts == 1
    assert position(lightning, "audit_log") == lightning.store.max_position()
    now[0] = 1010.0
    consumer.catch_up()
    assert consumer.failing()["agents"].attempts == 2 and consumer.next_retry() == 1030.0
    for due in (1030.0, 1070.0):
        now[0] = due
        consumer.catch_up()
    assert [p.key for p in lightning.consumers.parked(ParkedFilter())] == [str(poisoned)]
    assert str(more) in {r["id"] for r in rows(lightning, "agents")}
    assert consumer.failing() == {}


def test_the_failpoint_makes_a_chosen_projection_fail_on_a_chosen_aggregate(
    lightning: Lightning, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = register(lightning, "target")
    register(lightning, "bystander")
    monkeypatch.setenv("LIGHTNING_FAILPOINTS", f"apply:agents:{target}")
    failpoints.armed.cache_clear()
    try:
        run_to_head(lightning.consumers.build(KIND))
    finally:
        monkeypatch.delenv("LIGHTNING_FAILPOINTS")
        failpoints.armed.cache_clear()
    parked = lightning.consumers.parked(ParkedFilter())
    assert [(p.handler, p.key) for p in parked] == [("agents", str(target))]
    assert "failpoint apply:agents" in (parked[0].error or "")
    [result] = lightning.consumers.retry_parked(ParkedFilter(handler="agents"))
    assert result.ok
    assert_agents_equal_fold_of_log(lightning)


def test_rebuild_forgets_what_was_parked(lightning: Lightning) -> None:
    from lightning.projections import rebuild

    given_a_poisoned_aggregate(lightning)
    assert lightning.consumers.parked(ParkedFilter())
    rebuild(lightning.consumers, "agents")  # with the real projection, which has no bug
    assert lightning.consumers.parked(ParkedFilter()) == []
    assert_agents_equal_fold_of_log(lightning, audit=False)


def test_names_are_checked(lightning: Lightning) -> None:
    from lightning.domain.errors import NotFound, ValidationFailed

    with pytest.raises(NotFound):
        lightning.consumers.parked(ParkedFilter(consumer="nope"))
    with pytest.raises(NotFound):
        lightning.consumers.parked(ParkedFilter(handler="nope"))
    with pytest.raises(ValidationFailed):
        lightning.consumers.parked(ParkedFilter(key="k" * 500))
    assert sorted(lightning.consumers.handler_names(KIND)) == sorted(
        p.name for p in all_projections()
    )
    assert "workflow_publish" in lightning.consumers.handler_names("sagas")


# ---- found in review ----------------------------------------------------------------------------


class Recording(AuditLogProjection):
    """Records every event it is handed (from any thread), slowly, to widen race windows."""

    def __init__(self, applied: list[int]) -> None:
        self.applied = applied

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        self.applied.extend(e.position for e in envelopes)
        time.sleep(0.3)
        super().apply_batch(tx, envelopes)


def test_two_consumers_never_both_apply_a_handler_without_a_tracking_row(
    lightning: Lightning,
) -> None:
    """A new handler has no tracking row to lock yet: the first batch must create and lock it,
    or an active worker and a standby both apply (and commit) the same events."""
    for i in range(5):
        register(lightning, f"a{i}")
    applied: list[int] = []

    def run(upto: int | None) -> None:
        consumer = Consumer(
            KIND, [Recording(applied)], lightning.consumers.tracking, lightning.store
        )
        with contextlib.suppress(LostRace):  # losing the race is fine; applying twice is not
            consumer.catch_up(upto=upto)

    active = threading.Thread(target=run, args=(6,))
    standby = threading.Thread(target=run, args=(None,))
    active.start()
    time.sleep(0.05)
    standby.start()
    active.join()
    standby.join()
    committed = [r["position"] for r in rows(lightning, "audit_log")]
    assert committed == list(range(1, lightning.store.max_position() + 1))
    assert sorted(applied) == sorted(set(applied))  # nothing handed over twice


def test_a_failure_someone_else_parked_is_not_retried_for_ever(lightning: Lightning) -> None:
    poisoned = register(lightning, "poisoned")
    backing_off = consumer_with(lightning, FailsOn(poisoned), retries=5)
    backing_off.catch_up()
    assert backing_off.next_retry() is not None
    consumer_with(lightning, FailsOn(poisoned), retries=0).catch_up()  # a standby parks it
    time.sleep(0.05)
    backing_off.catch_up()
    assert backing_off.failing() == {} and backing_off.next_retry() is None


@pytest.fixture
def on_postgres(postgres_url: str) -> Iterator[Lightning]:
    from lightning.config import Settings

    app = Lightning.open(Settings(database_url=postgres_url, amqp_url=None, _env_file=None))
    try:
        yield app
    finally:
        app.close()


def test_consistency_never_answers_yes_between_park_and_position(
    on_postgres: Lightning, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads the positions and the parked rows in two statements (two snapshots;
    SQLite reads both in one): a worker committing "park and move past" between them must not
    make the wait answer yes."""
    app = on_postgres
    poisoned = register(app, "poisoned")
    head = app.store.max_position()
    worker = consumer_with(app, FailsOn(poisoned), retries=0)
    positions = app.consumers.tracking.positions
    interleaved: list[bool] = []

    def then_the_worker_commits(*args: object, **kwargs: object) -> dict[str, int]:
        found = positions(*args, **kwargs)  # type: ignore[arg-type]
        if not interleaved:
            interleaved.append(True)
            worker.catch_up()  # parks the event and moves agents past it
        return found

    monkeypatch.setattr(app.consumers.tracking, "positions", then_the_worker_commits)
    with pytest.raises(Unavailable, match="parked"):  # not yet, or held back: never "yes"
        app.consumers.waiter.reached(head, ["agents"])
    assert interleaved and app.consumers.parked(ParkedFilter())


def test_an_error_text_with_a_nul_is_stored(lightning: Lightning) -> None:
    poisoned = register(lightning, "poisoned")
    register(lightning, "other")
    failing = FailsOn(poisoned, ValueError("bad description 'a\x00b' \udcff"))
    run_to_head(consumer_with(lightning, failing, retries=0))
    [parked] = lightning.consumers.parked(ParkedFilter())
    assert parked.error == "ValueError: bad description 'a\\x00b' \\udcff"
    assert position(lightning, "audit_log") == lightning.store.max_position()


def test_retry_parked_unparks_what_applies_and_keeps_the_rest(lightning: Lightning) -> None:
    poisoned, _, consumer = given_a_poisoned_aggregate(lightning)
    lightning.agents.reconfigure(CTX, poisoned, temperature=1.5)
    lightning.agents.reconfigure(CTX, poisoned, temperature=1.6)
    run_to_head(consumer)
    parked = lightning.consumers.parked(ParkedFilter())
    assert len(parked) == 3

    class FailsOnTheLast(AgentsProjection):
        def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
            if any(e.position == parked[-1].position for e in envelopes):
                raise RuntimeError("still broken at the end")
            super().apply_batch(tx, envelopes)

    lightning.consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [FailsOnTheLast()])
    [result] = lightning.consumers.retry_parked(ParkedFilter(key=str(poisoned)))
    assert (result.applied, result.ok) == (2, False) and "still broken" in (result.error or "")
    [left] = lightning.consumers.parked(ParkedFilter())
    assert left.position == parked[-1].position and left.attempts == 1
    assert "still broken" in (left.error or "")
    [row] = [r for r in rows(lightning, "agents") if r["id"] == str(poisoned)]
    assert row["temperature"] == 1.5


def test_a_handler_far_behind_catches_up_without_another_delivery(lightning: Lightning) -> None:
    """A tracking row rolled back more than a read-ahead page behind the others (a database
    crash losing asynchronous commits): one catch-up brings it back to the head."""
    for i in range(30):
        register(lightning, f"a{i}")
    consumer = lightning.consumers.build(KIND)
    consumer.catch_up()
    with lightning.consumers.tracking.transaction(commit=True) as tx:
        tx.execute("DELETE FROM audit_log")
        tx.execute(
            f"UPDATE {lightning.consumers.tracking.tracking_table} SET notification_id = 0"
            " WHERE application_name = 'audit_log'"
        )
    consumer.batch_size = 7  # small pages, as a large log would have with 500
    register(lightning, "last")
    head = lightning.store.max_position()
    consumer.deliver([Delivery(lightning.store.get(head))])  # type: ignore[arg-type]
    assert {n: position(lightning, n) for n in ("agents", "audit_log")} == {
        "agents": head,
        "audit_log": head,
    }


def test_retry_parked_on_sqlite_while_another_process_writes(tmp_path: Path) -> None:
    """The operator's process and the server's share one SQLite file: write transactions take
    the write lock when they begin, so a retry never fails on a commit made meanwhile."""
    from lightning.config import Settings

    url = f"sqlite:///{tmp_path}/shared.db"
    server = Lightning.open(Settings(database_url=url, amqp_url=None, _env_file=None))
    operator = Lightning.open(Settings(database_url=url, amqp_url=None, _env_file=None))
    stop = threading.Event()
    writer: threading.Thread | None = None
    try:
        poisoned, failing, consumer = given_a_poisoned_aggregate(server)

        def keep_writing() -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                register(server, f"w{i}")
                consumer.catch_up()

        writer = threading.Thread(target=keep_writing)
        writer.start()
        operator.consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [failing])
        for _ in range(10):
            [dry] = operator.consumers.retry_parked(ParkedFilter(key=str(poisoned)), dry_run=True)
            assert not dry.ok  # still the same bug: it would fail again
        failing.healed = True
        [result] = operator.consumers.retry_parked(ParkedFilter(key=str(poisoned)))
        assert result.ok
    finally:
        stop.set()
        if writer is not None:
            writer.join()
        operator.close()
        server.close()


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


async def test_hostile_parked_events_arguments(lightning: Lightning) -> None:
    from lightning.api.schema import build_schema
    from lightning.services import SYSTEM

    schema = build_schema()
    context = {"lightning": lightning, "principal": SYSTEM, "feed": None}
    for arguments, code in [
        ('key: "a\\u0000b"', "BAD_USER_INPUT"),
        ('key: ""', "BAD_USER_INPUT"),
        (f'key: "{"k" * 201}"', "BAD_USER_INPUT"),
        ('consumer: "nope"', "NOT_FOUND"),
        (f'handler: "{"h" * 100_000}"', "NOT_FOUND"),
        ("first: 0", "BAD_USER_INPUT"),
        ("first: 2147483647", "BAD_USER_INPUT"),
        ('after: "bm90IGEgY3Vyc29y"', "BAD_USER_INPUT"),
        *[
            (f'after: "{cursor_of(raw)}"', "BAD_USER_INPUT")
            for raw in (
                '["projections", "agents", "a\\u0000b", 1]',
                '["projections", "agents", "\\ud800", 1]',
                '["projections", "agents", "k", true]',
                '["projections", "agents", "k", 99999999999999999999]',
                "[" * 1400,
            )
        ],
    ]:
        result = await schema.execute(
            f"{{ parkedEvents({arguments}) {{ key }} }}", context_value=context
        )
        assert result.errors is not None, arguments
        [error] = result.errors
        assert error.extensions == {"code": code} | (
            {"details": error.extensions["details"]} if "details" in error.extensions else {}
        ), arguments
        assert len(error.message) < 500


def test_commands_never_wait_on_a_retrying_handler_in_embedded_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one writer: a consumer batch must not wait, while holding it, for another
    connection (to read what a retrying handler missed), or commands time out behind it."""
    import random

    from lightning.config import Settings

    app = Lightning.open(
        Settings(database_url=f"sqlite:///{tmp_path}/x.db", amqp_url=None, _env_file=None)
    )
    failures: list[str] = []
    slowest = [0.0]
    try:
        targets = [register(app, f"t{i}") for i in range(8)]
        monkeypatch.setenv("LIGHTNING_FAILPOINTS", ",".join(f"apply:agents:{t}" for t in targets))
        failpoints.armed.cache_clear()
        app.start_embedded_workers()

        def work(n: int) -> None:
            for i in range(500):
                time.sleep(0.01)
                try:
                    if random.random() < 0.03:
                        app.agents.reconfigure(CTX, random.choice(targets), temperature=0.5)
                    else:
                        register(app, f"w{n}-{i}")
                except Exception as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        app.close()
        monkeypatch.delenv("LIGHTNING_FAILPOINTS")
        failpoints.armed.cache_clear()
    assert failures == []
    # A consumer batch waiting on a second connection held the writer for the pool's 5 s.
    assert slowest[0] < 2.5, f"a command waited {slowest[0]:.1f}s"


def test_a_retry_during_a_skip_applies_nothing_the_log_says_was_skipped(
    lightning: Lightning,
) -> None:
    poisoned, failing, _ = given_a_poisoned_aggregate(lightning)
    failing.healed = True  # a retry would apply them now
    lightning.consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [failing])
    record = lightning.skip_recorder(Context(OPERATOR), "racing")
    retried: list[object] = []

    def record_while_another_operator_retries(consumer: str, parked: Sequence[object]) -> object:
        retried.extend(lightning.consumers.retry_parked(ParkedFilter(key=str(poisoned))))
        return record(consumer, parked)  # type: ignore[arg-type]

    skipped = lightning.consumers.skip_parked(
        ParkedFilter(key=str(poisoned)), record_while_another_operator_retries
    )
    [result] = retried
    assert not result.ok and "skipping" in (result.error or "")  # type: ignore[attr-defined]
    assert [s.key for s in skipped] == [str(poisoned)]
    assert str(poisoned) not in {r["id"] for r in rows(lightning, "agents")}
    assert lightning.consumers.parked(ParkedFilter()) == []


async def test_parked_events_page_with_cursors(lightning: Lightning) -> None:
    from lightning.api.schema import build_schema
    from lightning.services import SYSTEM

    poisoned, _, consumer = given_a_poisoned_aggregate(lightning)
    for t in (0.1, 0.2, 0.3):
        lightning.agents.reconfigure(CTX, poisoned, temperature=t)
    run_to_head(consumer)
    schema = build_schema()
    context = {"lightning": lightning, "principal": SYSTEM, "feed": None}
    seen: list[int] = []
    after = None
    for _ in range(10):
        result = await schema.execute(
            "query($a: String) { parkedEvents(first: 3, after: $a) { position cursor } }",
            variable_values={"a": after},
            context_value=context,
        )
        assert result.errors is None and result.data is not None
        page = result.data["parkedEvents"]
        if not page:
            break
        seen += [p["position"] for p in page]
        after = page[-1]["cursor"]
    assert seen == [p.position for p in lightning.consumers.parked(ParkedFilter())]
    assert len(seen) == 4


async def test_text_filters_refuse_control_characters(lightning: Lightning) -> None:
    from lightning.api.schema import build_schema
    from lightning.services import SYSTEM

    schema = build_schema()
    context = {"lightning": lightning, "principal": SYSTEM, "feed": None}
    forged = base64.urlsafe_b64encode(b"agent:" + b"9" * 30).decode()
    for query in (
        '{ auditLog(actor: "a\\u0000b") { edges { node { position } } } }',
        '{ agents(status: "a\\u0000b") { edges { node { id } } } }',
        '{ agents(provider: "x' + "y" * 300 + '") { edges { node { id } } } }',
        '{ agents(after: "' + forged + '") { edges { node { id } } } }',
    ):
        result = await schema.execute(query, context_value=context)
        assert result.errors and result.errors[0].extensions["code"] == "BAD_USER_INPUT", query


def test_an_event_this_version_cannot_read_parks_its_stream_and_nothing_else(
    lightning: Lightning,
) -> None:
    from eventsourcing.persistence import StoredEvent

    from lightning.store.envelope import Undecodable

    broken_agent = register(lightning, "broken")
    [stored] = lightning.store.backend.recorder.insert_events(
        [StoredEvent(broken_agent, 2, "agent.reconfigured", b"{not json")]
    ) or [0]
    after = register(lightning, "after")
    run_to_head(lightning.consumers.build(KIND))
    parked = lightning.consumers.parked(ParkedFilter())
    assert {(p.handler, p.key, p.position) for p in parked} == {
        ("agents", str(broken_agent), stored),
        ("audit_log", str(broken_agent), stored),
    }
    assert all("cannot" in (p.error or "") or "Undecodable" in (p.error or "") for p in parked)
    assert str(after) in {r["id"] for r in rows(lightning, "agents")}
    head = lightning.store.max_position()
    assert {position(lightning, n) for n in ("agents", "api_keys", "audit_log")} == {head}
    listed = [e for e in lightning.store.iterate(0) if isinstance(e, Undecodable)]
    assert [e.position for e in listed] == [stored]  # readers see it, marked, and go on


def test_a_skip_that_cannot_be_recorded_leaves_nothing_marked(lightning: Lightning) -> None:
    from lightning.domain.errors import Forbidden

    poisoned, failing, _ = given_a_poisoned_aggregate(lightning)
    with pytest.raises(Forbidden):
        lightning.skip_recorder(Context(Principal(actor="key:v", role="viewer")), "")

    def broken_record(consumer: str, parked: Sequence[object]) -> object:
        raise RuntimeError("the event store refused the append")

    with pytest.raises(RuntimeError):
        lightning.consumers.skip_parked(ParkedFilter(key=str(poisoned)), broken_record)
    assert not any(p.skipping for p in lightning.consumers.parked(ParkedFilter()))
    failing.healed = True
    lightning.consumers.kinds[KIND] = ConsumerKind(KIND, lambda: [failing])
    [result] = lightning.consumers.retry_parked(ParkedFilter(key=str(poisoned)))
    assert result.ok
