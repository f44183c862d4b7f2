"""What the saga tests share: a scenario's agents and workflows, running the consumers and the
timer scheduler to quiescence with a clock the test controls, and reading the outcome."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from lightning.bootstrap import Lightning
from lightning.config import Settings
from lightning.consumers import run_to_head
from lightning.services import SYSTEM, Context

GROK = {"provider": "grok", "model": "grok-code-fast-1"}


@dataclass
class Clock:
    """A clock tests move by hand (sagas and the scheduler read it)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, by: timedelta) -> None:
        with self.lock:
            self.now += by


def open_app(database_url: str, clock: Clock | None = None, **settings: Any) -> Lightning:
    return Lightning.open(
        Settings(
            database_url=database_url,
            amqp_url=None,
            consumer_retries=2,
            consumer_retry_delay=0.001,
            _env_file=None,
            **settings,
        ),
        clock=clock or Clock(),
    )


def ctx(app: Lightning) -> Context:
    return Context(SYSTEM, now=app.clock)


def settle(app: Lightning, *, fire: bool = True, rounds: int = 200) -> int:
    """Run every consumer kind (and, with ``fire``, the scheduler) until nothing new happens."""
    consumers = {kind: app.consumers.build(kind) for kind in app.consumers.kinds}
    scheduler = app.scheduler if fire else None
    for _ in range(rounds):
        head = app.store.max_position()
        for consumer in consumers.values():
            run_to_head(consumer)
        fired = scheduler.fire_due() if scheduler is not None else 0
        if app.store.max_position() == head and not fired:
            return head
    raise AssertionError("the consumers did not settle")


def agent(app: Lightning, name: str) -> UUID:
    return app.agents.register(ctx(app), name=name, **GROK).agent.id


def graph(*agents: UUID) -> dict[str, Any]:
    """A chain of agent nodes, then a human review: the agents in this order."""
    nodes: list[dict[str, Any]] = [
        {"id": f"n{i}", "kind": "agent", "config": {"agentId": str(a)}}
        for i, a in enumerate(agents)
    ]
    nodes.append({"id": "review", "kind": "human_review", "config": {}})
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(len(agents) - 1)]
    edges.append({"source": f"n{len(agents) - 1}", "target": "review"})
    return {"nodes": nodes, "edges": edges}


def workflow(app: Lightning, name: str, *agents: UUID) -> UUID:
    return app.workflows.create(ctx(app), name=name, graph=graph(*agents)).workflow.id


def attached(app: Lightning, agent_id: UUID) -> set[tuple[str, int]]:
    """What the read model says is attached to an agent — checked against the aggregate."""
    row = app.read_models.agent(str(agent_id))
    assert row is not None
    from_row = {(w["workflow_id"], w["version"]) for w in row["workflows"]}
    from_log = {(str(w.workflow_id), w.version) for w in app.agents.get(agent_id).workflows}
    assert from_row == from_log, (from_row, from_log)
    return from_log


def of_type(app: Lightning, *types: str) -> list[Any]:
    return [e for e in app.store.iterate(0) if e.type in types]
