"""The composition root: builds the store, the consumer kinds, read models, services and
(embedded) workers from a Settings object. Nothing connects anywhere until ``Lightning.open`` is
called; the CLI, the HTTP app, the workers and the tests all build through here.

The consumer kinds are registered here (``consumers/`` knows none of them): today the projection
builders; the worker command picks among them by name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from .bus.inprocess import InProcessBus
from .config import Settings
from .consumers import (
    ConsumerKind,
    Consumers,
    ParkedEvent,
    Progress,
    RetryPolicy,
    open_tracking_store,
)
from .consumers.inprocess import ConsumerThread
from .domain.catalogue import Catalogue
from .domain.consumers import REASON_MAX, SkippedEvent
from .projections import ReadModels, projection_builders
from .services import AgentService, ApiKeyService, ConsumerLogService, Context
from .store import Backend, EventStore, PostgresBackend, open_backend
from .store.migrations import Migrator

log = logging.getLogger(__name__)


def catalogue_from(settings: Settings) -> Catalogue:
    if settings.model_catalogue is None:
        return Catalogue()
    return Catalogue({p: tuple(models) for p, models in settings.model_catalogue.items()})


def consumer_kinds() -> list[ConsumerKind]:
    """Every consumer kind, in the order ``worker all`` starts them."""
    return [projection_builders()]


def prepare_schema(backend: Backend) -> None:
    """The embedded default migrates itself; PostgreSQL must have been migrated by an operator
    (``lightning db migrate``) so that no server or worker changes a shared schema on its own."""
    migrator = Migrator(backend)
    if isinstance(backend, PostgresBackend):
        migrator.require_current()
        backend.schema_ready()
    else:
        migrator.migrate()


@dataclass
class Lightning:
    settings: Settings
    store: EventStore
    consumers: Consumers
    read_models: ReadModels
    agents: AgentService
    api_keys: ApiKeyService
    consumer_log: ConsumerLogService
    bus: InProcessBus | None = None
    threads: list[ConsumerThread] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings | None = None) -> Self:
        settings = settings or Settings()
        backend = open_backend(settings.database_url, pool_size=settings.postgres_pool_size)
        try:
            prepare_schema(backend)
        except BaseException:
            backend.close()
            raise
        bus_holder: list[InProcessBus] = []

        def on_commit(position: int) -> None:
            for bus in bus_holder:
                bus.notify(position)

        store = EventStore(backend, max_batch_events=settings.max_batch_events, on_commit=on_commit)
        consumers = Consumers(
            consumer_kinds(),
            open_tracking_store(backend),
            store,
            policy=RetryPolicy(
                retries=settings.consumer_retries, first_delay=settings.consumer_retry_delay
            ),
            progress=None if settings.is_distributed else Progress(),
        )
        admin_secret = settings.admin_secret.get_secret_value() if settings.admin_secret else None
        app = cls(
            settings=settings,
            store=store,
            consumers=consumers,
            read_models=ReadModels(backend),
            agents=AgentService(store, catalogue_from(settings)),
            api_keys=ApiKeyService(store, admin_secret),
            consumer_log=ConsumerLogService(store),
        )
        if not settings.is_distributed:
            app.bus = InProcessBus(store)
            bus_holder.append(app.bus)
        return app

    def start_embedded_workers(self) -> None:
        """Run every consumer kind in this process, fed by the in-process bus."""
        if self.bus is None:
            raise RuntimeError(
                "embedded workers need the in-process bus (LIGHTNING_AMQP_URL unset)"
            )
        for kind in self.consumers.kinds:
            thread = ConsumerThread(self.consumers.build(kind))
            self.bus.subscribe(thread)
            self.threads.append(thread)
            thread.start()
        self.bus.start()

    def skip_recorder(self, ctx: Context, reason: str) -> _SkipRecorder:
        """What ``consumers.skip_parked`` calls to record a skip as ``consumer.event_skipped``
        (the principal is checked here, before anything is marked)."""
        ctx.principal.require("administer")
        return _SkipRecorder(self.consumer_log, ctx, reason[:REASON_MAX])

    def close(self) -> None:
        if self.bus is not None:
            self.bus.stop()
        for thread in self.threads:
            thread.stop()
        self.threads.clear()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _SkipRecorder:
    service: ConsumerLogService
    ctx: Context
    reason: str

    def __call__(self, consumer: str, parked: Sequence[ParkedEvent]) -> int | None:
        skipped = [
            SkippedEvent(handler=p.handler, aggregate=p.key, position=p.position) for p in parked
        ]
        return self.service.record_skips(self.ctx, consumer, skipped, self.reason)
