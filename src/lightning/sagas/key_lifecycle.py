"""The API-key lifecycle saga (DESIGN §5): one instance per key, driven by durable timers.

* ``api_key.rotated`` → a timer at the end of the grace period → ``retire_previous_secret``
  (``api_key.previous_secret_retired``); a newer rotation replaces that timer, a revocation
  cancels it.
* ``api_key.issued`` with ``expires_at`` → a timer then → ``api_key.expired``.
* A key with a rotation policy → a timer ``notify before`` days ahead of each rotation the policy
  asks for (``rotate every`` days after the issue or the last rotation) → ``api_key.rotation_due``,
  which stands until the key is rotated; a key that names a ``deliverTo`` webhook subscription
  also gets a timer at the policy's time → ``rotate_by_policy`` (its new secret goes out to that
  subscription: the webhook dispatcher delivers it; this saga only asks for the rotation).
* ``api_key.revoked`` or ``api_key.expired`` → every pending timer of the key is cancelled.

Every time comes from the events (their data and ``occurred_at``), never from a clock, so the
same log always schedules the same timers.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ..domain.api_keys import ROTATION_POLICIES, RotationPolicyName
from ..services.workflows import WorkflowService
from ..store.envelope import Envelope
from .base import Decision, Instance, Message, Refused, Saga, SagaStatus
from .commands import (
    CancelTimer,
    ExpireApiKey,
    NoteRotationDue,
    RetirePreviousSecret,
    RotateByPolicy,
    SagaCommand,
    ScheduleTimer,
)

# Step (and timer) names; a rotation's and a cycle's carry the key's version of the event that
# began them (the issue is version 1), so they come from the log, never from a count kept here.
EXPIRE = "expire"
RETIRE = "retire previous secret @v"
NOTICE = "rotation notice @v"
ROTATE = "rotate by policy @v"


class KeyTimers(BaseModel):
    model_config = ConfigDict(frozen=True)

    policy: RotationPolicyName | None = None
    delivers: bool = False  # the key names a deliverTo subscription: rotated by its policy
    timers: dict[str, datetime] = Field(default_factory=dict)  # pending: step -> due
    ended: bool = False


def _parse(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class KeyLifecycle(Saga[KeyTimers]):
    name = "key_lifecycle"
    description = "retires previous secrets after their grace, expires keys, gives rotation notices"
    types = frozenset(
        {
            "api_key.issued",
            "api_key.rotated",
            "api_key.revoked",
            "api_key.expired",
            "timer.fired",
            "timer.cancelled",
        }
    )
    state_type = KeyTimers

    def key(self, envelope: Envelope) -> str | None:
        if envelope.aggregate_type == "timer":
            if envelope.data.get("saga") != self.name:
                return None
            return str(envelope.data.get("instance", "")) or None
        return envelope.aggregate_key

    def decide(
        self, current: Instance[KeyTimers] | None, message: Message, now: datetime
    ) -> Decision[KeyTimers] | None:
        if isinstance(message, Refused):
            if current is None:
                return None
            failed = current.step(message.command.step, "FAILED", now, message.error)
            return Decision(replace(failed, status="FAILED", failure_reason=message.error))
        if message.type == "api_key.issued":
            return self._issued(message, now)
        if current is None and message.type == "api_key.rotated":
            # A key issued without expiry or policy: this saga starts at its first rotation.
            current = self.start(str(message.aggregate_id), message, KeyTimers())
        if current is None or current.state.ended:
            return None
        if message.type == "api_key.rotated":
            return self._rotated(current, message, now)
        if message.type == "timer.fired":
            return self._fired(current, message, now)
        if message.type == "timer.cancelled":
            return self._cancelled(current, message, now)
        return self._ended(current, now)  # revoked or expired

    def abort(
        self, current: Instance[KeyTimers] | None, key: str, workflows: WorkflowService
    ) -> list[SagaCommand]:
        """Cancel the key's pending timers."""
        if current is None:
            return []
        return [CancelTimer(f"cancel {step}", timer_step=step) for step in current.state.timers]

    def _issued(self, event: Envelope, now: datetime) -> Decision[KeyTimers] | None:
        policy = event.data.get("rotation_policy")
        expires_at = event.data.get("expires_at")
        if policy is None and expires_at is None:
            return None  # nothing to wait for, unless it is rotated
        state = KeyTimers(policy=policy, delivers=event.data.get("deliver_to") is not None)
        instance = self.start(str(event.aggregate_id), event, state)
        plan: list[tuple[str, datetime, dict[str, object]]] = []
        if expires_at is not None:
            plan.append((EXPIRE, _parse(expires_at), {}))
        plan += self._notice(instance.state, event.occurred_at, event.version)
        return self._schedule(instance, plan, [], now)

    def _rotated(
        self, current: Instance[KeyTimers], event: Envelope, now: datetime
    ) -> Decision[KeyTimers]:
        replaced = [s for s in current.state.timers if s != EXPIRE]  # the rotation's and notice
        plan: list[tuple[str, datetime, dict[str, object]]] = [
            (f"{RETIRE}{event.version}", _parse(event.data["previous_valid_until"]), {})
        ]
        plan += self._notice(current.state, event.occurred_at, event.version)
        return self._schedule(current, plan, replaced, now)

    def _notice(
        self, state: KeyTimers, cycle_start: datetime, cycle: int
    ) -> list[tuple[str, datetime, dict[str, object]]]:
        if state.policy is None:
            return []
        policy = ROTATION_POLICIES[state.policy]
        due = cycle_start + timedelta(days=policy.rotate_every_days)
        notify_at = due - timedelta(days=policy.notify_before_days)
        plan: list[tuple[str, datetime, dict[str, object]]] = [
            (f"{NOTICE}{cycle}", notify_at, {"due_at": due.isoformat()})
        ]
        if state.delivers:
            plan.append((f"{ROTATE}{cycle}", due, {}))
        return plan

    def _schedule(
        self,
        current: Instance[KeyTimers],
        plan: list[tuple[str, datetime, dict[str, object]]],
        cancel: list[str],
        now: datetime,
    ) -> Decision[KeyTimers]:
        timers = dict(current.state.timers)
        commands: list[SagaCommand] = []
        instance = current
        for step in cancel:
            timers.pop(step, None)
            instance = instance.step(step, "CANCELLED", now)
            commands.append(CancelTimer(f"cancel {step}", timer_step=step))
        for step, due, payload in plan:
            timers[step] = due
            instance = instance.step(step, "WAITING", now)
            commands.append(ScheduleTimer(step, due_at=due, payload=payload))
        return Decision(
            _settled(instance, current.state.model_copy(update={"timers": timers})), commands
        )

    def _fired(
        self, current: Instance[KeyTimers], event: Envelope, now: datetime
    ) -> Decision[KeyTimers] | None:
        step = str(event.data.get("step", ""))
        if step not in current.state.timers:
            return None  # cancelled meanwhile: the cancellation lost the race, nothing to do
        key = UUID(current.id)
        command = _command_for(step, key, event.data.get("payload", {}))
        if command is None:  # a step this code does not name: nothing it could do
            timers = {s: d for s, d in current.state.timers.items() if s != step}
            instance = current.step(step, "CANCELLED", now, "not a step of this version")
            return Decision(_settled(instance, current.state.model_copy(update={"timers": timers})))
        timers = {s: d for s, d in current.state.timers.items() if s != step}
        instance = current.step(step, "DONE", now)
        return Decision(
            _settled(instance, current.state.model_copy(update={"timers": timers})), [command]
        )

    def _cancelled(
        self, current: Instance[KeyTimers], event: Envelope, now: datetime
    ) -> Decision[KeyTimers] | None:
        step = str(event.data.get("step", ""))
        if step not in current.state.timers:
            return None  # ours: the state already says so
        # Not ours: an operator aborted the saga.
        timers = {s: d for s, d in current.state.timers.items() if s != step}
        instance = current.step(step, "CANCELLED", now, f"cancelled by {event.actor}")
        instance = replace(instance, failure_reason=f"timers cancelled by {event.actor}")
        return Decision(_settled(instance, current.state.model_copy(update={"timers": timers})))

    def _ended(self, current: Instance[KeyTimers], now: datetime) -> Decision[KeyTimers]:
        decision = self._schedule(current, [], list(current.state.timers), now)
        ended = decision.instance.state.model_copy(update={"ended": True})
        return Decision(_settled(decision.instance, ended), decision.commands)


def _command_for(step: str, key: UUID, payload: dict[str, object]) -> SagaCommand | None:
    """What a fired timer's step asks for; None for a name this version does not give."""
    if step == EXPIRE:
        return ExpireApiKey(step, key_id=key)
    cycle = step.rpartition("@v")[2]
    if not cycle.isdigit():
        return None
    if step.startswith(RETIRE):
        return RetirePreviousSecret(step, key_id=key, cycle=int(cycle))
    if step.startswith(ROTATE):
        return RotateByPolicy(step, key_id=key, cycle=int(cycle))
    if step.startswith(NOTICE) and payload.get("due_at") is not None:
        return NoteRotationDue(step, key_id=key, cycle=int(cycle), due_at=_parse(payload["due_at"]))
    return None


def _settled(instance: Instance[KeyTimers], state: KeyTimers) -> Instance[KeyTimers]:
    """WAITING while a timer is pending, COMPLETED otherwise (FAILED stays: a step this saga
    could not take is not taken later); the next timer's time."""
    upcoming = min(state.timers.values(), default=None)
    status: SagaStatus = "WAITING" if state.timers else "COMPLETED"
    return replace(
        instance,
        state=state,
        status="FAILED" if instance.status == "FAILED" else status,
        next_timer_at=upcoming,
    )
