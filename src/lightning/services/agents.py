"""Agent command handlers (load → decide → append) and reads from the event store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from ..domain import agent_names, agents
from ..domain.catalogue import Catalogue
from ..domain.errors import NotFound, ValidationFailed
from ..domain.messages import DomainEvent
from ..store.commands import CommandRecord
from ..store.envelope import Envelope
from ..store.event_store import Events
from .common import (
    Context,
    Loaded,
    as_of,
    load,
    once,
    parse,
    retry_on_conflict,
    stamp,
)


@dataclass(frozen=True)
class AgentResult:
    position: int
    agent: agents.Agent


def _fold(aggregate_id: UUID) -> Any:
    def evolve(state: agents.Agent | None, event: DomainEvent) -> agents.Agent | None:
        return agents.evolve(state, event, aggregate_id)

    return evolve


class AgentService:
    def __init__(self, store: Events, catalogue: Catalogue) -> None:
        self.store = store
        self.catalogue = catalogue

    # ---- commands ---------------------------------------------------------------------------

    def register(self, ctx: Context, **fields: object) -> AgentResult:
        ctx.principal.require("operate")
        command = parse(agents.RegisterAgent, agent_id=ctx.new_id(), **fields)
        return self._once(ctx, lambda: self._register(ctx, command))

    def _register(self, ctx: Context, command: agents.RegisterAgent) -> AgentResult:
        # The id was minted (uuid4) for this command, so its stream is empty on the first try:
        # no read needed. A retry reads it: the conflict was most likely on the name
        # reservation, but it may be that a commit whose answer was lost did go through, and
        # then deciding again on the stored agent finds the command already satisfied.
        attempts = iter(range(10_000))
        return retry_on_conflict(lambda: self._register_once(ctx, command, next(attempts) > 0))()

    def _register_once(
        self, ctx: Context, command: agents.RegisterAgent, reload: bool
    ) -> AgentResult:
        current: Loaded[agents.Agent | None] = (
            self._load(command.agent_id) if reload else Loaded(None, 0, [])
        )
        events = agents.decide(command, current.state, self.catalogue)
        envelopes = stamp(ctx, command.agent_id, current.version, events)
        if events:
            name = envelopes[0].data["name"]
            envelopes = self._reserve(ctx, name, command.agent_id) + envelopes
        return self._commit(ctx, current, envelopes, command.agent_id)

    def reconfigure(self, ctx: Context, agent_id: UUID, **changes: object) -> AgentResult:
        ctx.principal.require("operate")
        command = parse(agents.ReconfigureAgent, agent_id=agent_id, **changes)
        return self._once(ctx, lambda: self._decide(ctx, command))

    def retire(self, ctx: Context, agent_id: UUID) -> AgentResult:
        ctx.principal.require("operate")
        return self._once(ctx, lambda: self._decide(ctx, agents.RetireAgent(agent_id=agent_id)))

    def restore_version(self, ctx: Context, agent_id: UUID, version: int) -> AgentResult:
        """A new configuration version equal to configuration ``version``."""
        ctx.principal.require("operate")
        command = parse(agents.RestoreAgentVersion, agent_id=agent_id, config_version=version)
        return self._once(ctx, lambda: self._decide(ctx, command))

    def attach_workflow(
        self, ctx: Context, agent_id: UUID, workflow_id: UUID, version: int
    ) -> AgentResult:
        """The publish saga's step: this workflow version uses the agent (refused: retired)."""
        ctx.principal.require("operate")
        command = agents.AttachWorkflow(agent_id=agent_id, workflow_id=workflow_id, version=version)
        return self._once(ctx, lambda: self._decide(ctx, command))

    def detach_workflow(
        self, ctx: Context, agent_id: UUID, workflow_id: UUID, version: int
    ) -> AgentResult:
        ctx.principal.require("operate")
        command = agents.DetachWorkflow(agent_id=agent_id, workflow_id=workflow_id, version=version)
        return self._once(ctx, lambda: self._decide(ctx, command))

    def _once(self, ctx: Context, handle: Callable[[], AgentResult]) -> AgentResult:
        return once(self.store, ctx, handle, self._first)

    def _first(self, record: CommandRecord) -> AgentResult:
        envelopes = as_of(self.store, record)
        fold = _fold(record.aggregate_id)
        state = load(self.store, record.aggregate_id, fold, None, envelopes).state
        assert state is not None  # the command registered or changed this agent
        return AgentResult(record.position, state)

    @retry_on_conflict
    def _decide(self, ctx: Context, command: agents.AgentCommand) -> AgentResult:
        current = self._load(command.agent_id)
        events = agents.decide(command, current.state, self.catalogue)
        envelopes = stamp(ctx, command.agent_id, current.version, events)
        assert current.state is not None  # decide raised NotFound otherwise
        old_name = current.state.config.name
        for event in events:
            if isinstance(event, agents.AgentRetired):
                envelopes += self._release(ctx, old_name, command.agent_id)
            elif isinstance(event, agents.AgentReconfigured) and _renamed(old_name, event.name):
                assert event.name is not None
                envelopes = self._reserve(ctx, event.name, command.agent_id) + envelopes
                envelopes += self._release(ctx, old_name, command.agent_id)
        return self._commit(ctx, current, envelopes, command.agent_id)

    # ---- reads ------------------------------------------------------------------------------

    def get(self, agent_id: UUID) -> agents.Agent:
        state = self._load(agent_id).state
        if state is None:
            raise NotFound(f"agent {agent_id} does not exist")
        return state

    def state_at(
        self, agent_id: UUID, *, version: int | None = None, as_of: datetime | None = None
    ) -> tuple[agents.Agent, Envelope]:
        """The agent as it was after ``version`` or at time ``as_of`` (time travel)."""
        envelopes = self.store.load(agent_id, to_version=version)
        if as_of is not None:
            envelopes = [e for e in envelopes if e.occurred_at <= as_of]
        if version is not None and version < 1:
            raise ValidationFailed("version must be at least 1", details={"version": version})
        state = load(self.store, agent_id, _fold(agent_id), None, envelopes).state
        if state is None:
            when = f" at {as_of.isoformat()}" if as_of else ""
            raise NotFound(f"agent {agent_id} did not exist{when}")
        return state, envelopes[-1]

    # ---- internals --------------------------------------------------------------------------

    def _load(self, agent_id: UUID) -> Loaded[agents.Agent | None]:
        return load(self.store, agent_id, _fold(agent_id), None)

    def _reservation(self, name: str) -> tuple[UUID, Loaded[agent_names.NameReservation]]:
        rid = agent_names.reservation_id(name)
        return rid, load(self.store, rid, agent_names.evolve, agent_names.NameReservation())

    def _reserve(self, ctx: Context, name: str, agent_id: UUID) -> list[Envelope]:
        rid, current = self._reservation(name)
        return stamp(ctx, rid, current.version, agent_names.reserve(current.state, name, agent_id))

    def _release(self, ctx: Context, name: str, agent_id: UUID) -> list[Envelope]:
        rid, current = self._reservation(name)
        return stamp(ctx, rid, current.version, agent_names.release(current.state, name, agent_id))

    def _commit(
        self,
        ctx: Context,
        current: Loaded[agents.Agent | None],
        envelopes: list[Envelope],
        agent_id: UUID,
    ) -> AgentResult:
        if not envelopes:  # already satisfied: nothing new, report where the agent stands
            assert current.state is not None
            return AgentResult(current.envelopes[-1].position, current.state)
        stored = self.store.append(envelopes, command=ctx.claim(agent_id))
        mine = [e for e in stored if e.aggregate_id == agent_id]
        state = load(self.store, agent_id, _fold(agent_id), None, current.envelopes + mine).state
        assert state is not None
        return AgentResult(max(e.position for e in stored), state)


def _renamed(old: str, new: str | None) -> bool:
    """A rename that moves the agent to another name reservation (not just a change of case)."""
    return new is not None and agent_names.reservation_id(new) != agent_names.reservation_id(old)
