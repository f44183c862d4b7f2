"""The sagas on both backends (SQLite + in-process, PostgreSQL): each saga's happy and
compensation path, redelivery, replay with a frozen clock, crashes between steps, parking,
abort, and 50 concurrent publications sharing agents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.consumers import ParkedFilter, run_to_head
from lightning.services import Context
from lightning.services.common import Principal

from .sagas_support import Clock, agent, attached, ctx, of_type, open_app, settle, workflow


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(database_url: str, clock: Clock) -> Iterator[Lightning]:
    lightning = open_app(database_url, clock)
    try:
        yield lightning
    finally:
        lightning.close()


def instance_rows(app: Lightning) -> list[dict[str, Any]]:
    rows = app.store.backend.query("SELECT * FROM saga_instances ORDER BY saga, instance")
    return [{k: v for k, v in r.items() if k not in ("started_at", "updated_at")} for r in rows]


# ---- workflow publish -----------------------------------------------------------------------------


def test_a_workflow_whose_agents_are_active_is_published_and_attached(app: Lightning) -> None:
    a1, a2 = agent(app, "planner"), agent(app, "coder")
    wf = workflow(app, "triage", a1, a2)
    request = Context(Principal("key:user", "operator"))
    app.workflows.request_publish(request, wf)
    settle(app)
    state = app.workflows.get(wf)
    assert (state.status, state.published_version) == ("PUBLISHED", 1)
    assert attached(app, a1) == attached(app, a2) == {(str(wf), 1)}
    # attached one by one in graph order, then published; one correlation ties it all together
    caused = of_type(app, "agent.workflow_attached", "workflow.published")
    assert [(e.type, e.aggregate_id) for e in caused] == [
        ("agent.workflow_attached", a1),
        ("agent.workflow_attached", a2),
        ("workflow.published", wf),
    ]
    assert {e.correlation_id for e in caused} == {request.correlation_id}
    assert {e.actor for e in caused} == {"saga:workflow_publish"}
    [view] = app.sagas.get(str(wf))
    assert (view.type, view.status) == ("workflow_publish", "COMPLETED")
    assert [s.status for s in view.steps] == ["DONE", "DONE", "DONE"]
    assert app.read_models.workflow(str(wf))["status"] == "PUBLISHED"  # type: ignore[index]


def test_a_workflow_whose_last_agent_was_retired_fails_and_is_compensated(
    app: Lightning,
) -> None:
    a1, a2, a3 = agent(app, "a1"), agent(app, "a2"), agent(app, "a3")
    wf = workflow(app, "doomed", a1, a2, a3)
    app.agents.retire(ctx(app), a3)  # after the draft, before the publication
    app.workflows.request_publish(ctx(app), wf)
    settle(app)
    state = app.workflows.get(wf)
    assert state.status == "PUBLISH_FAILED"
    assert state.failure_reason == f"agent {a3} is retired"
    assert attached(app, a1) == attached(app, a2) == attached(app, a3) == set()
    assert len(of_type(app, "agent.workflow_attached")) == 2
    assert len(of_type(app, "agent.workflow_detached")) == 2
    [view] = app.sagas.get(str(wf))
    assert (view.status, view.failure_reason) == ("COMPENSATED", f"agent {a3} is retired")
    row = app.read_models.workflow(str(wf))
    assert row is not None and (row["status"], row["failure_reason"]) == (
        "PUBLISH_FAILED",
        f"agent {a3} is retired",
    )


def test_an_agent_retired_meanwhile_degrades_the_published_workflow(app: Lightning) -> None:
    a1, a2 = agent(app, "a1"), agent(app, "a2")
    wf = workflow(app, "live", a1, a2)
    app.workflows.request_publish(ctx(app), wf)
    settle(app)
    app.agents.retire(ctx(app), a2)
    settle(app)
    state = app.workflows.get(wf)
    assert (state.status, state.degraded) == ("PUBLISHED", True)
    assert app.read_models.workflow(str(wf))["degraded"]  # type: ignore[index]
    [view] = app.sagas.get(str(a2), "agent_retirement")
    assert view.status == "COMPLETED"


def test_a_newer_version_replaces_the_old_one_on_its_agents_and_archive_releases_them(
    app: Lightning,
) -> None:
    a1, a2, a3 = agent(app, "a1"), agent(app, "a2"), agent(app, "a3")
    wf = workflow(app, "evolving", a1, a2)
    app.workflows.request_publish(ctx(app), wf)
    settle(app)
    app.workflows.update_draft(ctx(app), wf, graph=_chain(a2, a3))
    app.workflows.request_publish(ctx(app), wf)
    settle(app)
    assert app.workflows.get(wf).published_version == 2
    assert attached(app, a1) == set()
    assert attached(app, a2) == attached(app, a3) == {(str(wf), 2)}
    restored = app.workflows.restore_version(ctx(app), wf, 1).workflow
    assert restored.draft == app.workflows.get(wf).find(1).graph  # type: ignore[union-attr]
    app.workflows.archive(ctx(app), wf)
    settle(app)
    assert attached(app, a2) == attached(app, a3) == set()


def _chain(*agents: UUID) -> dict[str, Any]:
    from .sagas_support import graph

    return graph(*agents)


# ---- delivered twice, replayed, crashed --------------------------------------------------------


def test_every_event_applied_twice_by_a_saga_acts_once(app: Lightning) -> None:
    """The saga handler given each event a second time, in a transaction of its own, as a
    redelivery past the tracking would: no command is applied twice."""
    a1, a2 = agent(app, "a1"), agent(app, "a2")
    good, bad = workflow(app, "good", a1, a2), workflow(app, "bad", a2, a1)
    app.workflows.request_publish(ctx(app), good)
    settle(app)
    app.agents.retire(ctx(app), a1)
    app.workflows.request_publish(ctx(app), bad)
    settle(app)
    before = [e.id for e in app.store.iterate(0)]
    rows = instance_rows(app)
    consumer = app.consumers.build("sagas")
    for envelope in app.store.iterate(0):
        with app.consumers.tracking.transaction(commit=True) as tx:
            for handler in consumer.handlers:
                if handler.wants(envelope):
                    handler.apply_batch(tx, [envelope])
    assert [e.id for e in app.store.iterate(0)] == before
    assert instance_rows(app) == rows


def test_a_saga_replayed_from_the_log_with_a_frozen_clock_sends_the_same_commands(
    app: Lightning, clock: Clock
) -> None:
    """Forget every saga instance and position, and run the sagas over the whole log again at
    the same (frozen) time: the same instances result, and every command they send is the
    one already applied (its id derives from the saga, the trigger and the step), so the log
    gains nothing."""
    a1, a2, a3 = agent(app, "a1"), agent(app, "a2"), agent(app, "a3")
    ok, doomed = workflow(app, "ok", a1, a2), workflow(app, "doomed", a1, a3)
    app.agents.retire(ctx(app), a3)
    for wf in (ok, doomed):
        app.workflows.request_publish(ctx(app), wf)
    key = app.api_keys.issue(
        ctx(app), name="k", role="viewer", expires_at=clock() + timedelta(seconds=5)
    )
    app.api_keys.rotate(ctx(app), key.key.id, grace_period_seconds=2)
    settle(app)
    clock.advance(timedelta(seconds=10))
    settle(app)
    assert app.api_keys.get(key.key.id).status == "expired"
    log, rows = [e.id for e in app.store.iterate(0)], instance_rows(app)
    commands = app.store.backend.query(
        "SELECT * FROM applied_commands WHERE principal LIKE 'saga:%' ORDER BY command_id"
    )
    assert len(commands) >= 8
    for handler in app.consumers.handler_names("sagas"):
        app.consumers.reset(
            "sagas", handler, ["saga_instances"] if handler != "timers" else ["pending_timers"]
        )
    settle(app, fire=False)
    assert [e.id for e in app.store.iterate(0)] == log
    assert instance_rows(app) == rows


def test_a_batch_that_fails_after_its_commands_leaves_nothing_behind(
    app: Lightning, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between a step's command and the commit (here: an error in the same batch after
    the command was sent): the command's events roll back with the batch, and the retry applies
    the step once."""
    from lightning.sagas import instances

    a1, a2 = agent(app, "a1"), agent(app, "a2")
    wf = workflow(app, "wf", a1, a2)
    app.workflows.request_publish(ctx(app), wf)
    real_save = instances.save
    calls = {"n": 0}

    def crash_once(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("crash after the step's command")
        real_save(*args, **kwargs)

    monkeypatch.setattr(instances, "save", crash_once)
    settle(app)
    assert app.workflows.get(wf).status == "PUBLISHED"
    assert len(of_type(app, "agent.workflow_attached")) == 2
    assert len(of_type(app, "workflow.published")) == 1


# ---- parking, retry, abort ---------------------------------------------------------------------


def test_a_failing_saga_step_parks_its_instance_alone_and_abort_undoes_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning import failpoints

    app = open_app(database_url)
    try:
        a1, a2 = agent(app, "a1"), agent(app, "a2")
        stuck, other = workflow(app, "stuck", a1, a2), workflow(app, "other", a1, a2)
        app.workflows.request_publish(ctx(app), stuck)
        settle(app)  # both attached and published... then a second publication gets stuck
        app.workflows.update_draft(ctx(app), stuck, graph=_chain(a2, a1))
        monkeypatch.setenv("LIGHTNING_FAILPOINTS", f"apply:workflow_publish:{stuck}")
        failpoints.armed.cache_clear()
        app.workflows.request_publish(ctx(app), stuck)
        app.workflows.request_publish(ctx(app), other)
        settle(app)
        assert app.workflows.get(other).status == "PUBLISHED"  # the other instance flows on
        assert app.workflows.get(stuck).status == "PUBLISHING"
        [view] = app.sagas.get(str(stuck))
        assert view.status == "PARKED"
        parked_page, _ = app.sagas.listed(status="PARKED")
        assert [v.id for _, v in parked_page] == [str(stuck)]
        assert app.consumers.parked(ParkedFilter("sagas", "workflow_publish", str(stuck)))
        statuses = {s.name: s.status for s in app.consumers.statuses("sagas")}
        assert statuses["workflow_publish"] == "degraded"

        # the fix is not in: an operator aborts it
        aborted = app.abort_saga(Context(Principal("cli:ops", "admin")), str(stuck), reason="stuck")
        assert aborted.skipped and aborted.sent
        monkeypatch.delenv("LIGHTNING_FAILPOINTS")
        failpoints.armed.cache_clear()
        settle(app)
        state = app.workflows.get(stuck)
        assert (state.status, state.published_version) == ("PUBLISHED", 1)  # v1 stays live
        assert state.find(2).status == "PUBLISH_FAILED"  # type: ignore[union-attr]
        assert attached(app, a1) == {(str(stuck), 1), (str(other), 1)}
        skipped = of_type(app, "consumer.event_skipped")
        assert skipped and {e.actor for e in skipped} == {"cli:ops"}
        assert app.sagas.get(str(stuck))[0].status != "PARKED"
    finally:
        failpoints.armed.cache_clear()
        app.close()


def test_a_parked_step_retried_after_the_fix_finishes_the_saga(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning import failpoints

    app = open_app(database_url)
    try:
        a1 = agent(app, "a1")
        wf = workflow(app, "wf", a1)
        monkeypatch.setenv("LIGHTNING_FAILPOINTS", f"apply:workflow_publish:{wf}")
        failpoints.armed.cache_clear()
        app.workflows.request_publish(ctx(app), wf)
        settle(app)
        assert app.sagas.get(str(wf))[0].status == "PARKED"  # shown from its parked event
        assert [r.ok for r in app.retry_saga(str(wf), dry_run=True)] == [False]
        monkeypatch.delenv("LIGHTNING_FAILPOINTS")
        failpoints.armed.cache_clear()
        [result] = app.retry_saga(str(wf))
        assert result.ok
        settle(app)
        assert app.workflows.get(wf).status == "PUBLISHED"
        assert app.sagas.get(str(wf))[0].status == "COMPLETED"
    finally:
        failpoints.armed.cache_clear()
        app.close()


# ---- concurrency --------------------------------------------------------------------------------


def test_fifty_concurrent_publications_sharing_agents(app: Lightning) -> None:
    shared = [agent(app, f"shared-{i}") for i in range(5)]
    flows = [workflow(app, f"wf-{i}", *shared[i % 3 : i % 3 + 3]) for i in range(50)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def run_consumers() -> None:
        try:
            while not stop.is_set():
                settle(app, fire=False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    runner = threading.Thread(target=run_consumers)
    runner.start()
    try:
        publishers = [
            threading.Thread(target=app.workflows.request_publish, args=(ctx(app), wf))
            for wf in flows
        ]
        for t in publishers:
            t.start()
        for t in publishers:
            t.join()
    finally:
        stop.set()
        runner.join()
    assert not errors
    settle(app)
    assert {app.workflows.get(wf).status for wf in flows} == {"PUBLISHED"}
    for i, a in enumerate(shared):
        using = {(str(wf), 1) for j, wf in enumerate(flows) if a in shared[j % 3 : j % 3 + 3]}
        assert attached(app, a) == using, i
    assert len(of_type(app, "workflow.published")) == 50


# ---- key lifecycle -------------------------------------------------------------------------------


def test_a_rotation_policy_gives_its_notice_and_a_rotation_ends_it(
    app: Lightning, clock: Clock
) -> None:
    issued = app.api_keys.issue(ctx(app), name="k", role="viewer", rotation_policy="high_security")
    settle(app)
    [view] = app.sagas.get(str(issued.key.id))
    assert view.status == "WAITING"
    assert view.next_timer_at == issued_at(app, issued.key.id) + timedelta(days=27)
    clock.advance(timedelta(days=27, seconds=1))
    settle(app)
    state = app.api_keys.get(issued.key.id)
    assert state.rotation_due_at == issued_at(app, issued.key.id) + timedelta(days=30)
    row = app.read_models.api_keys().items[0][1]
    assert row["rotation_due_at"] is not None
    app.api_keys.rotate(ctx(app), issued.key.id, grace_period_seconds=60)
    settle(app)
    assert app.api_keys.get(issued.key.id).rotation_due_at is None
    [view] = app.sagas.get(str(issued.key.id))
    assert view.status == "WAITING"  # the grace end, and the next cycle's notice
    assert len(of_type(app, "api_key.rotation_due")) == 1
    clock.advance(timedelta(seconds=61))
    settle(app)
    assert len(of_type(app, "api_key.previous_secret_retired")) == 1


def issued_at(app: Lightning, key: UUID) -> Any:
    return app.store.load(key)[0].occurred_at


def test_a_revocation_cancels_the_pending_timers(app: Lightning, clock: Clock) -> None:
    key = app.api_keys.issue(
        ctx(app), name="k", role="viewer", expires_at=clock() + timedelta(hours=1)
    ).key.id
    app.api_keys.rotate(ctx(app), key, grace_period_seconds=600)
    settle(app)
    app.api_keys.revoke(ctx(app), key)
    settle(app)
    clock.advance(timedelta(hours=2))
    settle(app)
    assert len(of_type(app, "timer.cancelled")) == 2
    assert of_type(app, "timer.fired") == []
    assert of_type(app, "api_key.expired", "api_key.previous_secret_retired") == []
    assert app.sagas.get(str(key))[0].status == "COMPLETED"


def test_a_command_id_given_twice_creates_one_workflow(app: Lightning) -> None:
    from uuid import uuid5

    a1 = agent(app, "a1")
    repeat = uuid5(UUID(int=0), "create-triage")
    first = app.workflows.create(
        Context(Principal("key:u", "operator"), command_id=repeat), name="wf", graph=_chain(a1)
    )
    again = app.workflows.create(
        Context(Principal("key:u", "operator"), command_id=repeat), name="wf", graph=_chain(a1)
    )
    assert (again.position, again.workflow.id) == (first.position, first.workflow.id)
    assert len(of_type(app, "workflow.created")) == 1


def test_an_abort_that_loses_the_race_to_the_completion_leaves_the_published_version_alone(
    app: Lightning, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.sagas.workflow_publish import WorkflowPublish

    a1, a2 = agent(app, "a1"), agent(app, "a2")
    wf = workflow(app, "wf", a1, a2)
    app.workflows.request_publish(ctx(app), wf)
    run_to_head(app.consumers.build("sagas"))  # the publication's first step: it is running
    assert app.sagas.get(str(wf))[0].status == "RUNNING"
    real = WorkflowPublish.abort

    def racing(self: WorkflowPublish, *args: Any) -> Any:
        commands = real(self, *args)  # decided while the publication was pending ...
        settle(app)  # ... which completes before they are sent
        return commands

    monkeypatch.setattr(WorkflowPublish, "abort", racing)
    app.abort_saga(Context(Principal("cli:ops", "admin")), str(wf))
    settle(app)
    state = app.workflows.get(wf)
    assert (state.status, state.published_version) == ("PUBLISHED", 1)
    assert attached(app, a1) == attached(app, a2) == {(str(wf), 1)}


def test_an_event_type_this_version_does_not_know_does_not_confuse_the_key_timers(
    app: Lightning, clock: Clock
) -> None:
    """A newer version's event on a key's stream is folded as "something happened": the
    key's version stays its stream's, and the timers named after it still act."""
    from uuid import uuid4

    from lightning.store.envelope import Envelope

    key = app.api_keys.issue(ctx(app), name="k", role="viewer").key.id
    last = app.store.load(key)[-1]
    app.store.append(
        [
            Envelope(
                id=uuid4(),
                type="api_key.labelled",
                aggregate_type="api_key",
                aggregate_id=key,
                version=last.version + 1,
                position=0,
                occurred_at=clock(),
                actor="system",
                correlation_id=uuid4(),
                data={"label": "from a newer version"},
            )
        ]
    )
    app.api_keys.rotate(ctx(app), key, grace_period_seconds=60)
    assert app.api_keys.get(key).version == 3 == app.store.load(key)[-1].version
    settle(app)
    clock.advance(timedelta(seconds=61))
    settle(app)
    assert app.api_keys.get(key).previous_secret_hash is None
    assert len(of_type(app, "api_key.previous_secret_retired")) == 1
