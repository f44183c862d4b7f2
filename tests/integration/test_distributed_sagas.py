"""Sagas and durable timers in distributed mode, on the real services, with `lightning worker
sagas` processes killed mid-run: a saga killed between two steps finishes exactly once; timers
that came due while no saga worker ran fire when one starts; two saga workers fire every timer
once; 100 publications, 5 of them doomed, survive the saga worker being killed twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from lightning.bootstrap import Lightning
from lightning.services import SYSTEM, Context

from .cluster import Cluster, assert_read_models_equal_fold_of_log, wait_caught_up
from .sagas_support import attached, graph


def ctx() -> Context:
    """A fresh context per command: its time and correlation id are that command's."""
    return Context(SYSTEM)


GROK = {"provider": "grok", "model": "grok-code-fast-1"}


@pytest.fixture
def app(cluster: Cluster) -> Iterator[Lightning]:
    lightning = cluster.open()
    try:
        yield lightning
    finally:
        lightning.close()


def wait_for(
    condition: Callable[[], bool], timeout: float = 60, cluster: Cluster | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out\n" + (cluster.logs()[-4000:] if cluster else ""))
        time.sleep(0.05)


def of_type(app: Lightning, *types: str) -> list:  # type: ignore[type-arg]
    return [e for e in app.store.iterate(0) if e.type in types]


def wait_until_running(app: Lightning, cluster: Cluster) -> None:
    """Until the workers have caught up and reported (a process takes a moment to start)."""

    def reported() -> bool:
        rows = app.consumers.tracking.status_rows()
        started = [
            *app.consumers.handler_names("projections"),
            *app.consumers.handler_names("sagas"),
        ]
        return all(n in rows for n in started)

    wait_for(reported, cluster=cluster)


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_a_saga_worker_killed_between_two_steps_finishes_exactly_once(
    cluster: Cluster, app: Lightning
) -> None:
    cluster.start_worker("relay", "projections")
    agents = [app.agents.register(ctx(), name=f"a{i}", **GROK).agent.id for i in range(3)]
    wf = app.workflows.create(ctx(), name="wf", graph=graph(*agents)).workflow.id
    doomed_sagas = cluster.start_worker("sagas", LIGHTNING_FAILPOINTS="saga.after_step")
    app.workflows.request_publish(ctx(), wf)
    assert doomed_sagas.wait(timeout=60) == -signal.SIGKILL  # right after its first step
    assert [e.aggregate_id for e in of_type(app, "agent.workflow_attached")] == agents[:1]
    cluster.start_worker("sagas")
    wait_for(lambda: app.workflows.get(wf).status == "PUBLISHED", cluster=cluster)
    assert [e.aggregate_id for e in of_type(app, "agent.workflow_attached")] == agents
    assert len(of_type(app, "workflow.published")) == 1
    wait_caught_up(app, cluster)
    assert all(attached(app, a) == {(str(wf), 1)} for a in agents)
    assert app.sagas.get(str(wf))[0].status == "COMPLETED"
    assert_read_models_equal_fold_of_log(app)


def test_key_timers_fire_on_time_also_when_the_saga_worker_was_killed_during_the_grace(
    cluster: Cluster, app: Lightning
) -> None:
    """DESIGN §5 on a running deployment: a key rotated with a 2 s grace gets
    previous_secret_retired within 2 s after the grace although the saga worker was killed
    during it; a key issued with expiresAt 3 s ahead is expired within 2 s of it and stops
    authenticating."""
    cluster.start_worker("relay", "projections")
    sagas = cluster.start_worker("sagas")
    wait_until_running(app, cluster)
    rotating = app.api_keys.issue(ctx(), name="rotating", role="operator")
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    expiring = app.api_keys.issue(ctx(), name="expiring", role="viewer", expires_at=expires_at)
    rotated = app.api_keys.rotate(ctx(), rotating.key.id, grace_period_seconds=2)
    grace_end = rotated.key.previous_valid_until
    assert grace_end is not None and expiring.secret is not None
    kill(sagas)  # during the grace, whether or not it had scheduled the timers yet
    assert datetime.now(UTC) < grace_end
    cluster.start_worker("sagas")
    wait_for(
        lambda: len(of_type(app, "api_key.previous_secret_retired", "api_key.expired")) == 2,
        timeout=30,
        cluster=cluster,
    )
    [retired] = of_type(app, "api_key.previous_secret_retired")
    [expired] = of_type(app, "api_key.expired")
    assert timedelta(0) <= retired.occurred_at - grace_end < timedelta(seconds=2)
    assert timedelta(0) <= expired.occurred_at - expires_at < timedelta(seconds=2)
    assert app.api_keys.authenticate(expiring.secret) is None
    assert app.api_keys.get(expiring.key.id).status == "expired"
    assert len(of_type(app, "timer.fired")) == 2


def test_a_timer_that_came_due_while_no_saga_worker_ran_fires_when_one_starts(
    cluster: Cluster, app: Lightning
) -> None:
    cluster.start_worker("relay", "projections")
    sagas = cluster.start_worker("sagas")
    key = app.api_keys.issue(
        ctx(), name="k", role="viewer", expires_at=datetime.now(UTC) + timedelta(seconds=2)
    )
    wait_for(lambda: bool(of_type(app, "timer.scheduled")), cluster=cluster)
    kill(sagas)
    time.sleep(3)  # it came due meanwhile
    assert not of_type(app, "timer.fired")
    started = datetime.now(UTC)
    cluster.start_worker("sagas")
    wait_for(lambda: app.api_keys.get(key.key.id).status == "expired", timeout=30, cluster=cluster)
    [fired] = of_type(app, "timer.fired")
    assert fired.occurred_at - started < timedelta(seconds=10)


def test_two_saga_workers_fire_every_timer_once(cluster: Cluster, app: Lightning) -> None:
    cluster.start_worker("relay", "projections")
    cluster.start_worker("sagas")
    cluster.start_worker("sagas")  # one active consumer, two schedulers racing
    # The graces must end before the keys expire: an expiry cancels the key's pending timers,
    # its grace timer among them (and then no api_key.previous_secret_retired ever comes).
    soon = datetime.now(UTC) + timedelta(seconds=6)
    keys = [
        app.api_keys.issue(ctx(), name=f"k{i}", role="viewer", expires_at=soon).key.id
        for i in range(10)
    ]
    for key in keys[:5]:
        app.api_keys.rotate(ctx(), key, grace_period_seconds=1)
    graces_end = datetime.now(UTC) + timedelta(seconds=1)
    assert graces_end < soon - timedelta(seconds=1), f"issuing and rotating took until {graces_end}"
    wait_for(
        lambda: (
            len(of_type(app, "api_key.expired")) == 10
            and len(of_type(app, "api_key.previous_secret_retired")) == 5
        ),
        timeout=60,
        cluster=cluster,
    )
    time.sleep(1.5)  # whatever a racing scheduler would add, it has had time to
    fired = Counter(e.aggregate_id for e in of_type(app, "timer.fired"))
    assert len(fired) == 15 and set(fired.values()) == {1}
    assert Counter(e.aggregate_id for e in of_type(app, "api_key.expired")) == Counter(keys)


def test_hundred_publications_five_doomed_with_the_saga_worker_killed_twice(
    cluster: Cluster, app: Lightning
) -> None:
    """The issue's run: 100 publications (5 of them doomed: their last agent was retired after
    the draft), the saga worker SIGKILLed twice mid-run and restarted."""
    cluster.start_worker("relay", "projections")
    sagas = cluster.start_worker("sagas")
    shared = [app.agents.register(ctx(), name=f"shared-{i}", **GROK).agent.id for i in range(12)]
    doomed_agents = [
        app.agents.register(ctx(), name=f"doomed-{i}", **GROK).agent.id for i in range(5)
    ]
    uses: dict[UUID, list[UUID]] = {}
    flows: list[UUID] = []
    for i in range(100):
        chain = [shared[(i + k) % 12] for k in range(3)]
        if i % 20 == 7:
            chain.append(doomed_agents[i // 20])  # the failing agent last
        wf = app.workflows.create(ctx(), name=f"wf-{i}", graph=graph(*chain)).workflow.id
        uses[wf] = chain
        flows.append(wf)
    for a in doomed_agents:
        app.agents.retire(ctx(), a)
    doomed = {wf for wf, chain in uses.items() if chain[-1] in doomed_agents}
    assert len(doomed) == 5

    settled = lambda: len(of_type(app, "workflow.published", "workflow.publish_failed"))  # noqa: E731
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(app.workflows.request_publish, ctx(), wf) for wf in flows]
        for target in (25, 60):
            wait_for(lambda: settled() >= target, timeout=120, cluster=cluster)  # noqa: B023
            kill(sagas)
            sagas = cluster.start_worker("sagas")
        for future in futures:
            future.result(timeout=60)
    wait_for(lambda: settled() == 100, timeout=180, cluster=cluster)
    wait_caught_up(app, cluster)

    statuses = Counter(app.workflows.get(wf).status for wf in flows)
    assert statuses == Counter({"PUBLISHED": 95, "PUBLISH_FAILED": 5})
    assert {wf for wf in flows if app.workflows.get(wf).status == "PUBLISH_FAILED"} == doomed
    for wf in doomed:
        assert app.workflows.get(wf).failure_reason == f"agent {uses[wf][-1]} is retired"
    for a in [*shared, *doomed_agents]:
        expected = {(str(wf), 1) for wf, chain in uses.items() if wf not in doomed and a in chain}
        assert attached(app, a) == expected
    attachments = Counter(
        (e.aggregate_id, e.data["workflow_id"]) for e in of_type(app, "agent.workflow_attached")
    )
    assert set(attachments.values()) == {1}  # no step applied twice
    assert len(of_type(app, "workflow.published")) == 95
    assert len(of_type(app, "workflow.publish_failed")) == 5
    compensated = [v for v in (app.sagas.get(str(wf))[0] for wf in doomed)]
    assert {v.status for v in compensated} == {"COMPENSATED"}
    assert_read_models_equal_fold_of_log(app)
