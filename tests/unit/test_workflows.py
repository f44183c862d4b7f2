"""Workflow aggregate (DESIGN §4): given events, when command, then events or error."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from lightning.domain import workflows
from lightning.domain.errors import Conflict, NotFound, ValidationFailed
from lightning.domain.workflows import (
    ArchiveWorkflow,
    CompletePublish,
    CreateWorkflow,
    DegradeWorkflow,
    FailPublish,
    Graph,
    RequestPublish,
    RestoreWorkflowVersion,
    UpdateWorkflowDraft,
    WorkflowArchived,
    WorkflowCreated,
    WorkflowDegraded,
    WorkflowDraftUpdated,
    WorkflowPublished,
    WorkflowPublishFailed,
    WorkflowPublishRequested,
)

from .given import given

WF = UUID(int=0xF)
A1, A2 = UUID(int=1), UUID(int=2)


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> Graph:
    return Graph.model_validate({"nodes": nodes, "edges": edges or []})


TRIAGE = graph(
    [
        {"id": "review", "kind": "human_review", "config": {}},
        {"id": "second", "kind": "agent", "config": {"agentId": str(A2)}},
        {"id": "first", "kind": "agent", "config": {"agentId": str(A1)}},
    ],
    [
        {"source": "first", "target": "second"},
        {"source": "second", "target": "review"},
    ],
)
SOLO = graph([{"id": "only", "kind": "agent", "config": {"agentId": str(A1)}}])
CREATED = WorkflowCreated(name="triage", graph=TRIAGE)
REQUESTED = WorkflowPublishRequested(version=1, graph=TRIAGE, agents=(A1, A2))


def when(history: list[workflows.WorkflowEvent], command: Any) -> list[workflows.WorkflowEvent]:
    state = given(history, lambda s, e: workflows.evolve(s, e, WF))
    return workflows.decide(command, state)


def test_given_nothing_when_create_then_created_as_draft_version_1() -> None:
    assert when([], CreateWorkflow(workflow_id=WF, name="triage", graph=TRIAGE)) == [CREATED]
    state = given([CREATED], lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None and (state.status, state.draft_version) == ("DRAFT", 1)


def test_given_created_when_publish_requested_then_the_agents_come_in_graph_order() -> None:
    # "first" feeds "second": first is attached first, though listed after it.
    assert when([CREATED], RequestPublish(workflow_id=WF)) == [REQUESTED]


def test_given_publishing_when_another_publish_then_one_at_a_time() -> None:
    updated = WorkflowDraftUpdated(graph=SOLO, draft_version=2)
    assert when([CREATED, REQUESTED], RequestPublish(workflow_id=WF)) == []  # the same request
    with pytest.raises(Conflict, match="one publication at a time"):
        when([CREATED, REQUESTED, updated], RequestPublish(workflow_id=WF))


def test_given_publishing_when_completed_twice_then_published_once() -> None:
    done = when([CREATED, REQUESTED], CompletePublish(workflow_id=WF, version=1))
    assert done == [WorkflowPublished(version=1)]
    assert when([CREATED, REQUESTED, *done], CompletePublish(workflow_id=WF, version=1)) == []
    state = given([CREATED, REQUESTED, *done], lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None and (state.status, state.published_version) == ("PUBLISHED", 1)


def test_given_publishing_when_failed_then_publish_failed_with_the_reason() -> None:
    failed = when(
        [CREATED, REQUESTED], FailPublish(workflow_id=WF, version=1, reason="agent 2 is retired")
    )
    assert failed == [WorkflowPublishFailed(version=1, reason="agent 2 is retired")]
    state = given([CREATED, REQUESTED, *failed], lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None and state.status == "PUBLISH_FAILED"
    assert state.versions[0].failure_reason == "agent 2 is retired"


def test_given_a_requested_version_then_it_never_changes_and_is_not_requested_again() -> None:
    history = [CREATED, REQUESTED, WorkflowPublished(version=1)]
    with pytest.raises(Conflict, match="already requested"):
        when(history, RequestPublish(workflow_id=WF))
    [updated] = when(history, UpdateWorkflowDraft(workflow_id=WF, graph=SOLO))
    state = given([*history, updated], lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None and state.find(1) is not None
    assert state.find(1).graph == TRIAGE  # type: ignore[union-attr]
    assert state.draft == SOLO and state.draft_version == 2


def test_given_published_when_restore_then_a_new_draft_equal_to_the_old_version() -> None:
    history = [
        CREATED,
        REQUESTED,
        WorkflowPublished(version=1),
        WorkflowDraftUpdated(graph=SOLO, draft_version=2),
    ]
    assert when(history, RestoreWorkflowVersion(workflow_id=WF, version=1)) == [
        WorkflowDraftUpdated(graph=TRIAGE, draft_version=3, restored_from=1)
    ]
    with pytest.raises(NotFound):
        when(history, RestoreWorkflowVersion(workflow_id=WF, version=2))


def test_given_archived_then_no_command_is_taken() -> None:
    archived = [CREATED, WorkflowArchived()]
    assert when(archived, ArchiveWorkflow(workflow_id=WF)) == []
    for command in (
        UpdateWorkflowDraft(workflow_id=WF, graph=SOLO),
        RequestPublish(workflow_id=WF),
        RestoreWorkflowVersion(workflow_id=WF, version=1),
    ):
        with pytest.raises(Conflict, match="archived"):
            when(archived, command)


def test_given_publishing_when_archive_then_refused_until_it_ends() -> None:
    with pytest.raises(Conflict):
        when([CREATED, REQUESTED], ArchiveWorkflow(workflow_id=WF))


def test_given_published_when_an_agent_it_uses_is_retired_then_degraded_once() -> None:
    history = [CREATED, REQUESTED, WorkflowPublished(version=1)]
    degraded = when(history, DegradeWorkflow(workflow_id=WF, agent_id=A2))
    assert degraded == [WorkflowDegraded(version=1, agent_id=A2)]
    assert when([*history, *degraded], DegradeWorkflow(workflow_id=WF, agent_id=A2)) == []
    assert when(history, DegradeWorkflow(workflow_id=WF, agent_id=UUID(int=99))) == []


@pytest.mark.parametrize(
    ("nodes", "edges", "problem"),
    [
        ([], [], "1 to 200 nodes"),
        ([{"id": "a", "kind": "llm", "config": {}}], [], "unknown node kind"),
        ([{"id": "a", "kind": "agent", "config": {}}], [], "agentId"),
        ([{"id": "a", "kind": "agent", "config": {"agentId": "x"}}], [], "agentId"),
        ([{"id": "a", "kind": "tool", "config": {"name": "t", "extra": 1}}], [], "extra"),
        ([{"id": "a", "kind": "router", "config": {"routes": []}}], [], "routes"),
        (
            [{"id": "a", "kind": "tool", "config": {"name": "t"}}] * 2,
            [],
            "unique",
        ),
        (
            [
                {"id": "a", "kind": "tool", "config": {"name": "t"}},
                {"id": "b", "kind": "tool", "config": {"name": "t"}},
            ],
            [],
            "not connected",
        ),
        (
            [
                {"id": "a", "kind": "tool", "config": {"name": "t"}},
                {"id": "b", "kind": "tool", "config": {"name": "t"}},
            ],
            [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            "cycle",
        ),
        (
            [{"id": "a", "kind": "tool", "config": {"name": "t"}}],
            [{"source": "a", "target": "ghost"}],
            "lacks",
        ),
        (
            [
                {"id": "r", "kind": "human_review", "config": {}},
                {"id": "b", "kind": "tool", "config": {"name": "t"}},
            ],
            [{"source": "r", "target": "b"}],  # a review has no "out": approved or rejected
            "no port 'out'",
        ),
        (
            [{"id": "a\x00", "kind": "tool", "config": {"name": "t"}}],
            [],
            "control characters",
        ),
        (
            [{"id": "a", "kind": "tool", "config": {"name": "t" * 20_000}}],
            [],
            "16,384 bytes",
        ),
        (
            [{"id": f"n{i}", "kind": "tool", "config": {"name": "t"}} for i in range(201)],
            [],
            "1 to 200 nodes",
        ),
    ],
)
def test_when_create_with_a_bad_graph_then_refused(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(ValidationFailed, match=problem):
        when([], CreateWorkflow(workflow_id=WF, name="bad", graph=graph(nodes, edges)))


def test_router_ports_are_its_routes_and_review_ports_are_approved_and_rejected() -> None:
    routed = graph(
        [
            {"id": "r", "kind": "router", "config": {"routes": ["easy", "hard"]}},
            {"id": "a", "kind": "agent", "config": {"agentId": str(A1)}},
            {"id": "h", "kind": "human_review", "config": {"instructions": "look\ncarefully"}},
            {"id": "t", "kind": "tool", "config": {"name": "search"}},
        ],
        [
            {"source": "r", "sourcePort": "easy", "target": "a"},
            {"source": "r", "sourcePort": "hard", "target": "h"},
            {"source": "h", "sourcePort": "approved", "target": "t", "targetPort": "in"},
        ],
    )
    assert workflows.check_graph(routed) == (A1,)


def test_an_old_graph_read_back_is_never_checked_again() -> None:
    """Graphs in the log are folded as they are, whatever today's guards say."""
    beyond = graph(
        [{"id": f"n{i}", "kind": "retired_kind", "config": {}, "colour": "red"} for i in range(300)]
    )
    state = given(
        [WorkflowCreated(name="old", graph=beyond)], lambda s, e: workflows.evolve(s, e, WF)
    )
    assert state is not None and len(state.draft.nodes) == 300


# ---- what the sagas settle ------------------------------------------------------------------------


def test_given_publishing_when_an_agent_of_the_pending_version_is_retired_then_degraded_and_not_completed() -> (
    None
):
    history = [CREATED, REQUESTED]
    degraded = when(history, DegradeWorkflow(workflow_id=WF, agent_id=A2))
    assert degraded == [WorkflowDegraded(version=1, agent_id=A2)]
    with pytest.raises(Conflict, match="retired while version 1"):
        when([*history, *degraded], CompletePublish(workflow_id=WF, version=1))
    assert when([*history, *degraded], FailPublish(workflow_id=WF, version=1, reason="x")) == [
        WorkflowPublishFailed(version=1, reason="x")
    ]


def test_given_published_and_publishing_when_an_agent_of_both_is_retired_then_each_is_degraded() -> (
    None
):
    history = [
        CREATED,
        REQUESTED,
        WorkflowPublished(version=1),
        WorkflowDraftUpdated(graph=SOLO, draft_version=2),
        WorkflowPublishRequested(version=2, graph=SOLO, agents=(A1,)),
    ]
    one = when(history, DegradeWorkflow(workflow_id=WF, agent_id=A1, version=1))
    two = when(history, DegradeWorkflow(workflow_id=WF, agent_id=A1, version=2))
    assert (one, two) == (
        [WorkflowDegraded(version=1, agent_id=A1)],
        [WorkflowDegraded(version=2, agent_id=A1)],
    )
    with pytest.raises(Conflict, match="retired while version 2"):
        when([*history, *one, *two], CompletePublish(workflow_id=WF, version=2))


def test_a_position_that_is_not_a_finite_number_is_refused() -> None:
    for x in ("NaN", float("inf")):
        with pytest.raises(ValidationFailed):
            CreateWorkflow.of(
                workflow_id=WF,
                name="x",
                graph={
                    "nodes": [
                        {
                            "id": "a",
                            "kind": "tool",
                            "config": {"name": "t"},
                            "position": {"x": x, "y": 0},
                        }
                    ]
                },
            )
    nan_config = graph([{"id": "a", "kind": "tool", "config": {"name": "t", "w": float("nan")}}])
    with pytest.raises(ValidationFailed, match="not finite"):
        workflows.check_graph(nan_config)


def test_given_published_when_a_newer_version_publishes_then_the_old_one_is_superseded() -> None:
    history = [
        CREATED,
        REQUESTED,
        WorkflowPublished(version=1),
        WorkflowDraftUpdated(graph=SOLO, draft_version=2),
        WorkflowPublishRequested(version=2, graph=SOLO, agents=(A1,)),
    ]
    assert when(history, CompletePublish(workflow_id=WF, version=2)) == [
        WorkflowPublished(version=2, superseded_version=1, superseded_agents=(A1, A2))
    ]


def test_given_published_when_a_newer_version_fails_then_the_old_one_stays_published() -> None:
    history = [
        CREATED,
        REQUESTED,
        WorkflowPublished(version=1),
        WorkflowDraftUpdated(graph=SOLO, draft_version=2),
        WorkflowPublishRequested(version=2, graph=SOLO, agents=(A1,)),
        WorkflowPublishFailed(version=2, reason="agent 1 is retired"),
    ]
    state = given(history, lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None
    assert (state.status, state.published_version, state.failure_reason) == (
        "PUBLISHED",
        1,
        "agent 1 is retired",
    )


def test_given_published_when_archived_then_its_agents_are_named_for_release() -> None:
    history = [CREATED, REQUESTED, WorkflowPublished(version=1)]
    assert when(history, ArchiveWorkflow(workflow_id=WF)) == [
        WorkflowArchived(version=1, agents=(A1, A2))
    ]
    assert when([CREATED], ArchiveWorkflow(workflow_id=WF)) == [WorkflowArchived()]


def test_given_published_and_degraded_then_the_workflow_says_degraded() -> None:
    history = [
        CREATED,
        REQUESTED,
        WorkflowPublished(version=1),
        WorkflowDegraded(version=1, agent_id=A2),
    ]
    state = given(history, lambda s, e: workflows.evolve(s, e, WF))
    assert state is not None and state.degraded and state.status == "PUBLISHED"


def test_an_agent_in_two_nodes_is_attached_once() -> None:
    twice = graph(
        [
            {"id": "a", "kind": "agent", "config": {"agentId": str(A1)}},
            {"id": "b", "kind": "agent", "config": {"agentId": str(A1)}},
        ],
        [{"source": "a", "target": "b"}],
    )
    assert workflows.check_graph(twice) == (A1,)
