"""Projection builders: exactly-once effect under redelivery, gaps, crashes and restarts."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.bus import Delivery
from lightning.consumers import Consumer, Handler, ParkedFilter
from lightning.projections import KIND, all_projections, rebuild
from lightning.projections.agents import AgentsProjection
from lightning.replay import replay
from lightning.services import SYSTEM, Context
from lightning.store.backends import Tx
from lightning.store.envelope import Envelope

CTX = Context(SYSTEM)


def populate(app: Lightning, n: int = 5) -> None:
    for i in range(n):
        agent = app.agents.register(
            CTX, name=f"agent-{i}", provider="grok", model="grok-code-fast-1"
        ).agent.id
        app.agents.reconfigure(CTX, agent, temperature=0.1 * i)
        if i % 2:
            app.agents.retire(CTX, agent)
    app.api_keys.issue(CTX, name="ci", role="viewer")


def deliveries(envelopes: Sequence[Envelope]) -> list[Delivery]:
    return [Delivery(e) for e in envelopes]


def consumer(app: Lightning, name: str) -> Consumer:
    """A consumer of one projection (each keeps its own tracking row)."""
    return app.consumers.build(KIND, [p for p in all_projections() if p.name == name])


def with_handlers(app: Lightning, *handlers: Handler) -> Consumer:
    return app.consumers.build(KIND, handlers)


def position(app: Lightning, name: str) -> int:
    return app.consumers.tracking.position(name)


def rows(app: Lightning, table: str) -> list[dict[str, object]]:
    return app.consumers.tracking.read(f"SELECT * FROM {table} ORDER BY 1")


def assert_agents_equal_fold_of_log(app: Lightning, *, audit: bool = True) -> None:
    """The read model equals a replay of every agent's stream from the store."""
    ids = {e.aggregate_id for e in app.store.iterate(0) if e.aggregate_type == "agent"}
    by_id = {r["id"]: r for r in rows(app, "agents")}
    assert set(by_id) == {str(i) for i in ids}
    for agent_id in ids:
        state = replay(app, agent_id).state
        row = by_id[str(agent_id)]
        assert row["name"] == state["config"]["name"]
        assert row["temperature"] == pytest.approx(state["config"]["temperature"])
        assert row["status"] == state["status"]
        assert row["config_version"] == state["config_version"]
    if audit:
        logged = rows(app, "audit_log")
        assert [r["position"] for r in logged] == [e.position for e in app.store.iterate(0)]


def test_catch_up_builds_every_projection(lightning: Lightning) -> None:
    populate(lightning)
    for name in lightning.consumers.handler_names(KIND):
        assert consumer(lightning, name).catch_up() == lightning.store.max_position()
    assert_agents_equal_fold_of_log(lightning)
    assert all(s.lag == 0 for s in lightning.consumers.statuses(KIND))


def test_redelivery_changes_nothing(lightning: Lightning) -> None:
    populate(lightning)
    log = list(lightning.store.iterate(0))
    for name in lightning.consumers.handler_names(KIND):
        c = consumer(lightning, name)
        c.deliver(deliveries(log))
    before = {t: rows(lightning, t) for t in ("agents", "api_keys", "audit_log")}
    for name in lightning.consumers.handler_names(KIND):
        fresh = consumer(lightning, name)  # as after a restart: position read from the database
        fresh.deliver(deliveries(log))
        fresh.deliver(deliveries(log[3:7]))
    assert {t: rows(lightning, t) for t in before} == before
    assert_agents_equal_fold_of_log(lightning)


def test_gap_is_filled_from_the_store(lightning: Lightning) -> None:
    populate(lightning)
    log = list(lightning.store.iterate(0))
    c = consumer(lightning, "audit_log")
    # Only the last message arrives: everything before it is read from the store.
    c.deliver([Delivery(log[-1])])
    assert [r["position"] for r in rows(lightning, "audit_log")] == [e.position for e in log]


def test_messages_with_holes_between_them_are_filled_from_the_store(lightning: Lightning) -> None:
    populate(lightning)
    log = list(lightning.store.iterate(0))
    c = consumer(lightning, "audit_log")
    c.deliver([Delivery(log[0]), Delivery(log[5])])
    assert [r["position"] for r in rows(lightning, "audit_log")] == [e.position for e in log[:6]]


def test_restart_resumes_where_it_stopped(lightning: Lightning) -> None:
    populate(lightning)
    log = list(lightning.store.iterate(0))
    half = len(log) // 2
    consumer(lightning, "agents").deliver(deliveries(log[:half]))
    assert position(lightning, "agents") == log[half - 1].position
    consumer(lightning, "agents").catch_up()
    assert_agents_equal_fold_of_log(lightning, audit=False)


class Flaky(AgentsProjection):
    """Fails once on the n-th envelope it is handed, after writing earlier rows."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.seen = 0
        self.failed = False

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            self.seen += 1
            if self.seen == self.fail_at and not self.failed:
                self.failed = True
                raise RuntimeError("crash in the middle of a batch")
            super().apply_batch(tx, [envelope])


def test_a_failure_mid_batch_rolls_back_to_the_savepoint_and_nothing_doubles(
    lightning: Lightning,
) -> None:
    populate(lightning)
    flaky = Flaky(fail_at=4)
    with_handlers(lightning, flaky).catch_up()
    assert flaky.failed  # the batch failed part-way; its rows were rolled back, then re-applied
    assert position(lightning, "agents") == lightning.store.max_position()
    assert_agents_equal_fold_of_log(lightning, audit=False)
    assert lightning.consumers.parked(ParkedFilter()) == []


def test_rebuild_reproduces_the_same_rows(lightning: Lightning) -> None:
    populate(lightning)
    consumer(lightning, "agents").catch_up()
    before = rows(lightning, "agents")
    rebuild(lightning.consumers, "agents")
    assert rows(lightning, "agents") == before


def with_workflows(app: Lightning) -> None:
    from .sagas_support import graph

    agents = [UUID(str(r["id"])) for r in rows(app, "agents")] or [
        app.agents.register(CTX, name="wf-agent", provider="grok", model="grok-beta").agent.id
    ]
    for i in range(3):
        made = app.workflows.create(CTX, name=f"wf-{i}", graph=graph(*agents[:2]))
        app.workflows.update_draft(CTX, made.workflow.id, graph=graph(*agents[:1]))


def every_table(app: Lightning) -> dict[str, list[dict[str, object]]]:
    return {t: rows(app, t) for p in all_projections() for t in p.tables}


def positions(app: Lightning) -> dict[str, int]:
    return {p.name: position(app, p.name) for p in all_projections()}


def test_rebuild_all_reads_the_log_once_and_reproduces_every_read_model(
    lightning: Lightning,
) -> None:
    populate(lightning, 12)
    with_workflows(lightning)
    with_handlers(lightning, *all_projections()).catch_up()
    before = every_table(lightning)
    assert all(before[t] for t in ("agents", "api_keys", "audit_log", "workflows"))
    progress: list[tuple[int, int]] = []
    rebuilt = rebuild(
        lightning.consumers, batch_size=7, on_progress=lambda p, h: progress.append((p, h))
    )
    head = lightning.store.max_position()
    assert rebuilt.position == rebuilt.head == head
    assert every_table(lightning) == before
    assert positions(lightning) == dict.fromkeys(positions(lightning), head)
    # One pass for the four read models: a page of 7 per batch, not four reads of the log.
    assert rebuilt.pages <= head // 7 + 2
    assert progress == sorted(progress) and progress[-1] == (head, head)
    assert len(progress) >= head // 7  # a bar that moves batch by batch


def test_an_interrupted_rebuild_leaves_each_read_model_at_its_position_to_be_finished(
    lightning: Lightning,
) -> None:
    """As when the operator presses ^C: what was committed stays consistent with each read
    model's position, and the ordinary consumer (``worker projections``) carries on from there."""
    populate(lightning, 12)
    with_handlers(lightning, *all_projections()).catch_up()
    before = every_table(lightning)

    def interrupted(done: int, head: int) -> None:
        if done >= head // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(lightning.consumers, batch_size=5, on_progress=interrupted)
    head = lightning.store.max_position()
    assert 0 < min(positions(lightning).values()) < head
    audited = [r["position"] for r in rows(lightning, "audit_log")]
    assert audited == [e.position for e in lightning.store.iterate(0)][: len(audited)]
    assert audited[-1] == position(lightning, "audit_log")
    with_handlers(lightning, *all_projections()).catch_up()
    assert every_table(lightning) == before


class PoisonedFor(AgentsProjection):
    """The agents read model with a bug that only one agent's events meet."""

    def __init__(self, poisoned: UUID) -> None:
        self.poisoned = poisoned

    def apply_batch(self, tx: Tx, envelopes: Sequence[Envelope]) -> None:
        if any(e.aggregate_id == self.poisoned for e in envelopes):
            raise ValueError("a bug met by one agent")
        super().apply_batch(tx, envelopes)


def test_a_poison_event_met_in_a_rebuild_is_parked_and_everything_else_is_rebuilt(
    lightning: Lightning,
) -> None:
    populate(lightning, 8)
    poisoned = next(
        e.aggregate_id for e in lightning.store.iterate(0) if e.type == "agent.registered"
    )
    projections = [PoisonedFor(poisoned) if p.name == "agents" else p for p in all_projections()]
    tables = [t for p in projections for t in p.tables]
    rebuilt = lightning.consumers.rebuild(KIND, projections, tables, batch_size=4)
    head = lightning.store.max_position()
    assert rebuilt.position == head
    assert positions(lightning) == dict.fromkeys(positions(lightning), head)
    parked = lightning.consumers.parked(ParkedFilter())
    assert {(p.handler, p.key) for p in parked} == {("agents", str(poisoned))}
    assert str(poisoned) not in {r["id"] for r in rows(lightning, "agents")}
    assert len(rows(lightning, "agents")) == 7
    assert len(rows(lightning, "audit_log")) == len(list(lightning.store.iterate(0)))


def test_embedded_workers_follow_commits(lightning: Lightning) -> None:
    lightning.start_embedded_workers()
    populate(lightning, 3)
    lightning.consumers.wait_blocking(lightning.store.max_position(), timeout=10)
    assert_agents_equal_fold_of_log(lightning)
    tools = json.loads(str(rows(lightning, "agents")[0]["tools"]))
    assert tools == []


def group_consumer(app: Lightning) -> Consumer:
    return app.consumers.build(KIND)


def test_a_message_the_store_never_held_is_not_applied(lightning: Lightning) -> None:
    populate(lightning)
    log = list(lightning.store.iterate(0))
    c = group_consumer(lightning)
    foreign = log[2].model_copy(update={"id": UUID(int=777), "position": log[-1].position + 500})
    c.deliver([Delivery(foreign)])
    # It only told the consumer to read the store up to there: the store's events are applied,
    # nothing beyond the store's head is recorded, and new real events still arrive.
    assert position(lightning, "audit_log") == log[-1].position
    later = lightning.agents.register(CTX, name="later", provider="grok", model="grok-code-fast-1")
    c.deliver([Delivery(lightning.store.get(later.position))])  # type: ignore[arg-type]
    assert_agents_equal_fold_of_log(lightning)


def test_a_tracking_row_rolled_back_under_a_running_consumer_is_refilled(
    lightning: Lightning,
) -> None:
    """As after losing the last asynchronous commits of the read models in a database crash."""
    populate(lightning)
    log = list(lightning.store.iterate(0))
    c = group_consumer(lightning)
    c.catch_up(upto=log[10].position)
    with lightning.consumers.tracking.transaction(commit=True) as tx:
        table = lightning.consumers.tracking.tracking_table
        tx.execute(
            f"UPDATE {table} SET notification_id = ? WHERE application_name = 'audit_log'",
            (log[4].position,),
        )
        tx.execute("DELETE FROM audit_log WHERE position > ?", (log[4].position,))
    # The consumer still believes it is at log[10]; the next delivery must not skip 5..10.
    c.deliver([Delivery(log[-1])])
    assert_agents_equal_fold_of_log(lightning)


def test_a_projection_nobody_reports_for_is_stale(lightning: Lightning) -> None:
    populate(lightning, 1)
    c = group_consumer(lightning)
    c.catch_up()
    c.heartbeat()
    assert {s.status for s in lightning.consumers.statuses(KIND)} == {"running"}
    long_ago = "2026-01-01T00:00:00.000000Z"
    with lightning.consumers.tracking.transaction(commit=True) as tx:
        tx.execute("UPDATE consumer_status SET updated_at = ?", (long_ago,))
    stale = {s.name: s for s in lightning.consumers.statuses(KIND)}
    assert stale["agents"].status == "stale" and "no worker has reported" in (
        stale["agents"].error or ""
    )
    c.heartbeat()
    assert {s.status for s in lightning.consumers.statuses(KIND)} == {"running"}


def test_the_audit_log_filters_by_the_one_pattern_grammar(lightning: Lightning) -> None:
    from lightning.domain.consumers import SkippedEvent
    from lightning.domain.event_types import TypeFilter

    populate(lightning, 2)
    lightning.consumer_log.record_skips(
        CTX, KIND, [SkippedEvent(handler="agents", aggregate="x", position=1)]
    )
    group_consumer(lightning).catch_up()

    def types(*patterns: str) -> set[str]:
        page = lightning.read_models.audit_log(first=500, types=TypeFilter.parse(list(patterns)))
        return {row["type"] for _, row in page.items}

    assert types("agent.*") == {"agent.registered", "agent.reconfigured", "agent.retired"}
    assert types("agent_name.*") == {"agent_name.reserved", "agent_name.released"}
    assert types("api_key.issued", "agent.retired") == {"api_key.issued", "agent.retired"}
    assert "consumer.event_skipped" not in types("*") and "agent.registered" in types("*")
    assert types("consumer.*") == {"consumer.event_skipped"}


@pytest.fixture
def on_icu_postgres(postgres_server: str) -> Iterator[Lightning]:
    """A PostgreSQL database whose default collation is linguistic: ICU, ignoring punctuation."""
    import uuid

    import psycopg

    from lightning.config import Settings

    from ..conftest import _url_for, migrate

    name = f"lightning_icu_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu'
            " ICU_LOCALE 'und-u-ka-shifted' LOCALE 'C.UTF-8'"
        )
    try:
        migrate(_url_for(name))
        app = Lightning.open(Settings(database_url=_url_for(name), amqp_url=None, _env_file=None))
        try:
            yield app
        finally:
            app.close()
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_type_prefixes_are_exact_under_a_linguistic_collation(on_icu_postgres: Lightning) -> None:
    test_the_audit_log_filters_by_the_one_pattern_grammar(on_icu_postgres)


def test_shared_pages_are_read_once_for_every_reader_and_wait_for_no_reader_that_left(
    lightning: Lightning,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from lightning.consumers.read_ahead import PageReader, SharedPages

    populate(lightning, 10)
    log = [e.position for e in lightning.store.iterate(0)]

    def walk(take: Callable[[int, int | None], list[Envelope]], after: int = 0) -> list[int]:
        seen: list[int] = []
        while batch := take(after, None):
            seen += [e.position for e in batch]
            after = batch[-1].position
        return seen

    pages = SharedPages(lightning.store, 3, readers=2)
    with ThreadPoolExecutor(2) as pool:
        both = [pool.submit(walk, pages.reader(i).take) for i in (0, 1)]
        assert [f.result(timeout=20) for f in both] == [log, log]
    assert pages.pages_read <= len(log) // 3 + 2  # once for both
    pages.close()

    for _ in range(20):  # one reader out of step with the pages kept (a handler held back)
        pages = SharedPages(lightning.store, 3, readers=2)
        walked: dict[str, list[int]] = {}

        def walking(name: str, reader: PageReader, after: int, into: dict[str, list[int]]) -> None:
            into[name] = walk(reader.take, after)

        walkers = [
            threading.Thread(target=walking, args=("aligned", pages.reader(0), 0, walked)),
            threading.Thread(target=walking, args=("out_of_step", pages.reader(1), log[1], walked)),
        ]
        for walker in walkers:
            walker.daemon = True  # a deadlock fails the test instead of hanging the run
            walker.start()
        for walker in walkers:
            walker.join(timeout=20)
        assert walked == {"aligned": log, "out_of_step": log[2:]}  # neither waited for ever
        pages.close()

    pages = SharedPages(lightning.store, 3, readers=2)
    held_back, leader = pages.reader(0), pages.reader(1)
    assert [e.position for e in held_back.take(log[1], None)] == log[2:5]  # its own page
    held_back.close()  # done: the leader is not held back by it
    assert walk(leader.take) == log
    pages.close()
