"""Saga coordinators: process managers, one module per saga, on the consumer mechanism of
``consumers/``. They are one consumer kind (``sagas``: one queue, one worker command,
``lightning worker sagas``); each saga type is a handler with its own tracking row, and the
kind also keeps the index of pending durable timers that its scheduler fires."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ..consumers import ConsumerKind, Handler
from ..consumers.timers import PendingTimers
from ..domain.catalogue import Catalogue
from ..store.event_store import EventStore
from ..store.secrets import SecretVault
from .agent_retirement import AgentRetirement
from .base import Decision, Instance, Refused, Saga, Step
from .instances import KIND, STATUSES, SagaQueries, SagaView
from .key_lifecycle import KeyLifecycle
from .runtime import SagaHandler
from .workflow_publish import WorkflowPublish

# Events per saga transaction: from its first command until it commits, a batch holds the event
# store's write lock (so positions keep commit order), and every other command waits for it.
SAGA_BATCH = 100


def all_sagas() -> list[Saga[Any]]:
    return [WorkflowPublish(), AgentRetirement(), KeyLifecycle()]


def saga_types() -> list[str]:
    return [saga.name for saga in all_sagas()]


def saga_coordinators(
    store: EventStore,
    catalogue: Catalogue,
    clock: Callable[[], datetime],
    vault: SecretVault | None = None,
) -> ConsumerKind:
    """The consumer kind the composition root registers; it runs the timer scheduler."""

    def handlers() -> Sequence[Handler]:
        sagas: list[Handler] = [SagaHandler(s, store, catalogue, clock, vault) for s in all_sagas()]
        return [*sagas, PendingTimers()]

    return ConsumerKind(
        KIND,
        handlers,
        "process managers: workflow publication, agent retirement, key lifecycle",
        runs_timers=True,
        batch_size=SAGA_BATCH,
    )


__all__ = [
    "KIND",
    "STATUSES",
    "Decision",
    "Instance",
    "Refused",
    "Saga",
    "SagaHandler",
    "SagaQueries",
    "SagaView",
    "Step",
    "all_sagas",
    "saga_coordinators",
    "saga_types",
]
