"""Sagas are deciders (STYLE 15): given the events (and refusals) an instance has seen, when the
next one arrives, then these commands. No store, no clock: ``now`` is pinned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from lightning.domain import agents, api_keys, timers, workflows
from lightning.domain.messages import DomainEvent
from lightning.sagas import Instance, Refused, Saga
from lightning.sagas.agent_retirement import AgentRetirement
from lightning.sagas.commands import (
    AttachWorkflow,
    CancelTimer,
    CompletePublish,
    DegradeWorkflow,
    DetachWorkflow,
    ExpireApiKey,
    FailPublish,
    NoteRotationDue,
    RetirePreviousSecret,
    SagaCommand,
    ScheduleTimer,
)
from lightning.sagas.key_lifecycle import KeyLifecycle
from lightning.sagas.workflow_publish import WorkflowPublish
from lightning.store.envelope import Envelope, Metadata, pending

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WF, KEY = UUID(int=0xF), UUID(int=0xE)
A1, A2, A3 = UUID(int=1), UUID(int=2), UUID(int=3)
CORRELATION = UUID(int=0xC0)
GRAPH = workflows.Graph.model_validate(
    {"nodes": [{"id": "a", "kind": "agent", "config": {"agentId": str(A1)}}]}
)


def envelope(aggregate: UUID, event: DomainEvent, position: int, at: datetime = NOW) -> Envelope:
    return pending(
        event,
        event_id=UUID(int=position),
        aggregate_id=aggregate,
        version=position,
        occurred_at=at,
        meta=Metadata(actor="key:x", correlation_id=CORRELATION),
    ).model_copy(update={"position": position})


class Run:
    """Feed a saga messages one after another, as the runtime would (a refusal goes back to
    the saga at once); keep the instance and every command decided."""

    def __init__(self, saga: Saga[Any]) -> None:
        self.saga = saga
        self.instance: Instance[Any] | None = None
        self.sent: list[SagaCommand] = []
        self.position = 0

    def event(self, aggregate: UUID, event: DomainEvent, at: datetime = NOW) -> list[SagaCommand]:
        self.position += 1
        message = envelope(aggregate, event, self.position, at)
        decision = self.saga.decide(self.instance, message, NOW)
        if decision is None:
            return []
        self.instance = decision.instance
        self.sent += decision.commands
        self.last = message
        return list(decision.commands)

    def refuse(self, command: SagaCommand, error: str) -> list[SagaCommand]:
        decision = self.saga.decide(self.instance, Refused(command, error, self.last), NOW)
        assert decision is not None
        self.instance = decision.instance
        self.sent += decision.commands
        return list(decision.commands)

    @property
    def steps(self) -> list[tuple[str, str]]:
        assert self.instance is not None
        return [(s.name, s.status) for s in self.instance.steps]


def requested(*agents_: UUID, version: int = 1) -> workflows.WorkflowPublishRequested:
    return workflows.WorkflowPublishRequested(version=version, graph=GRAPH, agents=agents_)


def attached(run: Run, agent: UUID, version: int = 1) -> list[SagaCommand]:
    return run.event(agent, agents.AgentWorkflowAttached(workflow_id=WF, version=version))


# ---- workflow publish ----------------------------------------------------------------------------


def test_given_requested_when_each_agent_is_attached_then_the_next_then_published() -> None:
    run = Run(WorkflowPublish())
    assert run.event(WF, requested(A1, A2)) == [
        AttachWorkflow(f"attach agent {A1}", agent_id=A1, workflow_id=WF, version=1)
    ]
    assert attached(run, A1) == [
        AttachWorkflow(f"attach agent {A2}", agent_id=A2, workflow_id=WF, version=1)
    ]
    assert attached(run, A2) == [CompletePublish("publish", workflow_id=WF, version=1)]
    assert run.event(WF, workflows.WorkflowPublished(version=1)) == []
    assert run.instance is not None and run.instance.status == "COMPLETED"
    assert run.steps == [
        (f"attach agent {A1}", "DONE"),
        (f"attach agent {A2}", "DONE"),
        ("publish", "DONE"),
    ]
    assert run.instance.correlation_id == CORRELATION


def test_given_attached_when_the_same_attachment_is_delivered_twice_then_nothing_twice() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, A2))
    attached(run, A1)
    assert attached(run, A1) == []


def test_given_the_last_agent_refused_then_every_attached_one_is_detached_and_failed() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, A2, A3))
    attached(run, A1)
    [attach_3] = attached(run, A2)
    assert run.refuse(attach_3, f"agent {A3} is retired") == [
        DetachWorkflow(f"detach version 1 from agent {A2}", agent_id=A2, workflow_id=WF, version=1),
        DetachWorkflow(f"detach version 1 from agent {A1}", agent_id=A1, workflow_id=WF, version=1),
        FailPublish(
            "record the failure", workflow_id=WF, version=1, reason=f"agent {A3} is retired"
        ),
    ]
    assert run.instance is not None
    assert (run.instance.status, run.instance.failure_reason) == (
        "COMPENSATED",
        f"agent {A3} is retired",
    )
    assert run.steps == [
        (f"attach agent {A1}", "COMPENSATED"),
        (f"attach agent {A2}", "COMPENSATED"),
        (f"attach agent {A3}", "FAILED"),
        ("publish", "CANCELLED"),
        ("record the failure", "DONE"),
    ]
    # its own publish_failed coming back changes nothing more
    assert run.event(WF, workflows.WorkflowPublishFailed(version=1, reason="x")) == []


def test_given_the_first_agent_refused_then_failed_with_nothing_to_undo() -> None:
    run = Run(WorkflowPublish())
    [attach_1] = run.event(WF, requested(A1, A2))
    assert run.refuse(attach_1, "agent 1 does not exist") == [
        FailPublish(
            "record the failure", workflow_id=WF, version=1, reason="agent 1 does not exist"
        )
    ]
    assert run.instance is not None and run.instance.status == "FAILED"


def test_given_failed_when_an_attachment_lands_late_then_it_is_detached_too() -> None:
    """An attach sent before the failure was known (another handler degraded the workflow
    first, or an operator aborted meanwhile) commits after it: it is undone as well."""
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, A2))
    attached(run, A1)
    run.event(WF, workflows.WorkflowDegraded(version=1, agent_id=A1))  # fails, detaches A1
    assert attached(run, A2) == [
        DetachWorkflow(f"detach version 1 from agent {A2}", agent_id=A2, workflow_id=WF, version=1)
    ]


def test_given_attaching_when_an_attached_agent_is_retired_then_compensated() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, A2))
    attached(run, A1)
    commands = run.event(WF, workflows.WorkflowDegraded(version=1, agent_id=A1))
    assert [type(c) for c in commands] == [DetachWorkflow, FailPublish]
    assert "retired during the publication" in commands[-1].reason  # type: ignore[attr-defined]


def test_given_a_newer_version_published_then_the_superseded_one_is_detached() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, version=2))
    attached(run, A1, version=2)
    published = workflows.WorkflowPublished(
        version=2, superseded_version=1, superseded_agents=(A1, A2)
    )
    assert run.event(WF, published) == [
        DetachWorkflow(f"detach version 1 from agent {A1}", agent_id=A1, workflow_id=WF, version=1),
        DetachWorkflow(f"detach version 1 from agent {A2}", agent_id=A2, workflow_id=WF, version=1),
    ]


def test_given_published_when_archived_then_its_agents_are_released() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1))
    attached(run, A1)
    run.event(WF, workflows.WorkflowPublished(version=1))
    assert run.event(WF, workflows.WorkflowArchived(version=1, agents=(A1,))) == [
        DetachWorkflow(f"detach version 1 from agent {A1}", agent_id=A1, workflow_id=WF, version=1)
    ]


def test_events_of_an_older_publication_are_ignored() -> None:
    run = Run(WorkflowPublish())
    run.event(WF, requested(A1, version=2))
    assert attached(run, A1, version=1) == []


def test_a_saga_replayed_with_a_frozen_clock_decides_the_same_commands() -> None:
    def story() -> tuple[list[SagaCommand], Instance[Any] | None]:
        run = Run(WorkflowPublish())
        run.event(WF, requested(A1, A2))
        attached(run, A1)
        [attach_2] = run.sent[-1:]
        run.refuse(attach_2, "agent 2 is retired")
        return run.sent, run.instance

    assert story() == story()


# ---- agent retirement ----------------------------------------------------------------------------


def test_given_an_agent_in_two_workflows_when_retired_then_each_version_is_degraded() -> None:
    other = UUID(int=0xF2)
    run = Run(AgentRetirement())
    refs = (
        agents.AttachedWorkflow(workflow_id=WF, version=1),
        agents.AttachedWorkflow(workflow_id=WF, version=2),  # published 1, publishing 2
        agents.AttachedWorkflow(workflow_id=other, version=3),
    )
    assert run.event(A1, agents.AgentRetired(name="a", workflows=refs)) == [
        DegradeWorkflow(f"degrade workflow {WF} v1", workflow_id=WF, agent_id=A1, version=1),
        DegradeWorkflow(f"degrade workflow {WF} v2", workflow_id=WF, agent_id=A1, version=2),
        DegradeWorkflow(f"degrade workflow {other} v3", workflow_id=other, agent_id=A1, version=3),
    ]
    assert run.instance is not None and run.instance.status == "COMPLETED"
    assert Run(AgentRetirement()).event(A2, agents.AgentRetired(name="b")) == []


# ---- key lifecycle -------------------------------------------------------------------------------


def issued(**fields: Any) -> api_keys.ApiKeyIssued:
    return api_keys.ApiKeyIssued(name="ci", role="operator", secret_hash="1" * 64, **fields)


def fired(step: str, due: datetime, payload: dict[str, Any] | None = None) -> timers.TimerFired:
    return timers.TimerFired(
        due_at=due, saga="key_lifecycle", instance=str(KEY), step=step, payload=payload or {}
    )


def test_given_issued_with_an_expiry_when_its_timer_fires_then_expired() -> None:
    expires = NOW + timedelta(seconds=3)
    run = Run(KeyLifecycle())
    assert run.event(KEY, issued(expires_at=expires)) == [
        ScheduleTimer("expire", due_at=expires, payload={})
    ]
    assert run.instance is not None
    assert (run.instance.status, run.instance.next_timer_at) == ("WAITING", expires)
    assert run.event(KEY, fired("expire", expires)) == [ExpireApiKey("expire", key_id=KEY)]
    assert run.instance.status == "COMPLETED"  # type: ignore[union-attr]


def test_given_rotated_twice_then_only_the_latest_grace_end_retires_a_secret() -> None:
    run = Run(KeyLifecycle())
    assert run.event(KEY, issued()) == []  # nothing to wait for yet
    first_end, second_end = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    assert run.event(
        KEY, api_keys.ApiKeyRotated(secret_hash="2" * 64, previous_valid_until=first_end)
    ) == [ScheduleTimer("retire previous secret @v2", due_at=first_end, payload={})]
    assert run.event(
        KEY, api_keys.ApiKeyRotated(secret_hash="3" * 64, previous_valid_until=second_end)
    ) == [
        CancelTimer("cancel retire previous secret @v2", timer_step="retire previous secret @v2"),
        ScheduleTimer("retire previous secret @v3", due_at=second_end, payload={}),
    ]
    # the first timer fired anyway (it lost the race with its cancellation): nothing
    assert run.event(KEY, fired("retire previous secret @v2", first_end)) == []
    assert run.event(KEY, fired("retire previous secret @v3", second_end)) == [
        RetirePreviousSecret("retire previous secret @v3", key_id=KEY, cycle=3)
    ]


def test_given_a_policy_then_the_notice_comes_notify_before_days_ahead() -> None:
    run = Run(KeyLifecycle())
    due = NOW + timedelta(days=30)
    [schedule] = run.event(KEY, issued(rotation_policy="high_security"))
    assert schedule == ScheduleTimer(
        "rotation notice @v1", due_at=due - timedelta(days=3), payload={"due_at": due.isoformat()}
    )
    assert run.event(KEY, fired("rotation notice @v1", due, {"due_at": due.isoformat()})) == [
        NoteRotationDue("rotation notice @v1", key_id=KEY, cycle=1, due_at=due)
    ]


def test_given_waiting_when_revoked_then_every_timer_is_cancelled() -> None:
    run = Run(KeyLifecycle())
    run.event(KEY, issued(expires_at=NOW + timedelta(days=1), rotation_policy="standard"))
    commands = run.event(KEY, api_keys.ApiKeyRevoked())
    assert {c.timer_step for c in commands if isinstance(c, CancelTimer)} == {  # type: ignore[attr-defined]
        "expire",
        "rotation notice @v1",
    }
    assert run.instance is not None and run.instance.status == "COMPLETED"
    assert run.event(KEY, fired("expire", NOW)) == []


def test_timer_events_of_other_sagas_are_not_this_sagas() -> None:
    other = timers.TimerFired(due_at=NOW, saga="test", instance=str(KEY), step="expire")
    assert not KeyLifecycle().wants(envelope(UUID(int=9), other, 1))
