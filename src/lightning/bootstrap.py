"""The composition root: builds the store, read models, services and (embedded) workers from a
Settings object. Nothing connects anywhere until ``Lightning.open`` is called; the CLI, the
HTTP app and the tests all build through here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

from .bus.consumer import TrackedConsumer
from .bus.inprocess import ConsumerThread, InProcessBus
from .config import Settings
from .domain.catalogue import Catalogue
from .projections import Progress, Projections, ReadModels, open_read_store
from .services import AgentService, ApiKeyService
from .store import Backend, EventStore, PostgresBackend, open_backend
from .store.migrations import Migrator

log = logging.getLogger(__name__)


def catalogue_from(settings: Settings) -> Catalogue:
    if settings.model_catalogue is None:
        return Catalogue()
    return Catalogue({p: tuple(models) for p, models in settings.model_catalogue.items()})


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
    projections: Projections
    read_models: ReadModels
    agents: AgentService
    api_keys: ApiKeyService
    bus: InProcessBus | None = None
    consumers: list[ConsumerThread] = field(default_factory=list)

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
        read_store = open_read_store(backend)
        progress = None if settings.is_distributed else Progress()
        projections = Projections(store, read_store, progress=progress)
        admin_secret = settings.admin_secret.get_secret_value() if settings.admin_secret else None
        app = cls(
            settings=settings,
            store=store,
            projections=projections,
            read_models=ReadModels(read_store),
            agents=AgentService(store, catalogue_from(settings)),
            api_keys=ApiKeyService(store, admin_secret),
        )
        if not settings.is_distributed:
            app.bus = InProcessBus(store)
            bus_holder.append(app.bus)
        return app

    def start_embedded_workers(self) -> None:
        """Run the projection builders in this process, fed by the in-process bus."""
        if self.bus is None:
            raise RuntimeError(
                "embedded workers need the in-process bus (LIGHTNING_AMQP_URL unset)"
            )
        # The group reports each projection's progress and status itself.
        thread = ConsumerThread(TrackedConsumer(self.projections.group(), self.store))
        self.bus.subscribe(thread)
        self.consumers.append(thread)
        thread.start()
        self.bus.start()

    def close(self) -> None:
        if self.bus is not None:
            self.bus.stop()
        for consumer in self.consumers:
            consumer.stop()
        self.consumers.clear()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
