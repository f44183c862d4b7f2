"""The composition root: builds the store, the consumer kinds, read models, services and
(embedded) workers from a Settings object. Nothing connects anywhere until ``Lightning.open`` is
called; the CLI, the HTTP app, the workers and the tests all build through here.

The consumer kinds are registered here (``consumers/`` knows none of them): the projection
builders and the saga coordinators; the worker command picks among them by name. A kind that
keeps the pending-timer index also runs the timer scheduler beside its consumer.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self
from uuid import UUID

from .bus.inprocess import InProcessBus
from .config import Settings
from .consumers import (
    ConsumerKind,
    Consumers,
    ParkedEvent,
    Progress,
    RetryPolicy,
    RetryResult,
    open_tracking_store,
)
from .consumers.inprocess import ConsumerThread
from .consumers.timers import Scheduler
from .domain.catalogue import Catalogue
from .domain.consumers import REASON_MAX, SkippedEvent
from .domain.errors import ValidationFailed
from .projections import ReadModels, projection_builders
from .sagas import Saga, SagaQueries, SagaView, all_sagas, saga_coordinators, saga_types
from .sagas import operations as saga_operations
from .services import SYSTEM, AgentService, ApiKeyService, ConsumerLogService, Context
from .services.common import utc_now
from .services.timers import TimerService
from .services.webhooks import WebhookService
from .services.workflows import WorkflowService
from .store import Backend, EventStore, PostgresBackend, open_backend
from .store.migrations import Migrator
from .store.secrets import Keyring, SecretVault, keyring_for
from .webhooks import KIND as WEBHOOKS
from .webhooks import (
    Deliveries,
    Recovered,
    Schedule,
    Sender,
    SenderConfig,
    parse_schedule,
    webhook_dispatcher,
)

log = logging.getLogger(__name__)


def catalogue_from(settings: Settings) -> Catalogue:
    if settings.model_catalogue is None:
        return Catalogue()
    return Catalogue({p: tuple(models) for p, models in settings.model_catalogue.items()})


def consumer_kinds(
    store: EventStore,
    catalogue: Catalogue,
    clock: Callable[[], datetime] = utc_now,
    vault: SecretVault | None = None,
) -> list[ConsumerKind]:
    """Every consumer kind, in the order ``worker all`` starts them."""
    return [
        projection_builders(),
        saga_coordinators(store, catalogue, clock, vault),
        webhook_dispatcher(),
    ]


def keyring_from(settings: Settings) -> Keyring:
    """The encryption keys (``store/secrets.py``): configured, or a SQLite database's own."""
    configured = settings.encryption_key.get_secret_value() if settings.encryption_key else None
    url = settings.database_url
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else None
    if path is not None and path.startswith("file:"):
        path = path[len("file:") :].partition("?")[0] or ":memory:"
    return keyring_for(configured, url, distributed=settings.is_distributed, sqlite_path=path)


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
    workflows: WorkflowService
    timers: TimerService
    consumer_log: ConsumerLogService
    sagas: SagaQueries
    catalogue: Catalogue
    vault: SecretVault
    webhooks: WebhookService
    deliveries: Deliveries
    clock: Callable[[], datetime] = utc_now
    bus: InProcessBus | None = None
    threads: list[ConsumerThread] = field(default_factory=list)
    _background: list[tuple[threading.Thread, threading.Event]] = field(default_factory=list)

    @classmethod
    def open(
        cls, settings: Settings | None = None, *, clock: Callable[[], datetime] = utc_now
    ) -> Self:
        """``clock``: what sagas and the timer scheduler take for now (tests freeze it)."""
        settings = settings or Settings()
        keyring = keyring_from(settings)  # refuses to start without a key where one is needed
        parse_schedule(settings.webhook_retry_schedule)
        backend = open_backend(settings.database_url, pool_size=settings.postgres_pool_size)
        try:
            prepare_schema(backend)
        except BaseException:
            backend.close()
            raise
        vault = SecretVault(backend, keyring)
        bus_holder: list[InProcessBus] = []

        def on_commit(position: int) -> None:
            for bus in bus_holder:
                bus.notify(position)

        store = EventStore(backend, max_batch_events=settings.max_batch_events, on_commit=on_commit)
        catalogue = catalogue_from(settings)
        consumers = Consumers(
            consumer_kinds(store, catalogue, clock, vault),
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
            agents=AgentService(store, catalogue),
            api_keys=ApiKeyService(store, admin_secret, vault),
            workflows=WorkflowService(store),
            timers=TimerService(store),
            consumer_log=ConsumerLogService(store),
            sagas=SagaQueries(backend, saga_types()),
            catalogue=catalogue,
            vault=vault,
            webhooks=WebhookService(store, vault, allow_private=settings.webhook_allow_private),
            deliveries=Deliveries(backend),
            clock=clock,
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
        for kind in self.consumers.kinds.values():
            thread = ConsumerThread(self.consumers.build(kind.name))
            self.bus.subscribe(thread)
            self.threads.append(thread)
            thread.start()
            self.start_beside(kind.name)
        self.bus.start()

    def start_beside(self, kind: str) -> list[threading.Event]:
        """What runs beside a kind's consumer, in every process that runs it: the timer
        scheduler beside a kind that keeps the timer index, the sender beside the webhook
        dispatcher. Returns what stops them."""
        started = []
        if self.consumers.kind(kind).runs_timers:
            started.append(self.start_scheduler())
        if kind == WEBHOOKS:
            started.append(self._start_thread("webhook-sender", self.sender.run))
        return started

    @functools.cached_property
    def sender(self) -> Sender:
        """This process's webhook sender, woken when the dispatcher's handler commits."""
        settings = self.settings
        config = SenderConfig(
            schedule=Schedule(parse_schedule(settings.webhook_retry_schedule)),
            timeout=settings.webhook_timeout,
            concurrency=settings.webhook_concurrency,
            disable_after=settings.webhook_disable_after,
            allow_private=settings.webhook_allow_private,
            poll=settings.webhook_poll,
        )
        sender = Sender(self.store, self.vault, config, self._disable_webhook, clock=self.clock)
        self.consumers.on_progress(
            lambda handler, _position: sender.wake() if handler == WEBHOOKS else None
        )
        return sender

    def _disable_webhook(self, subscription: str, cause: str, reason: str) -> None:
        self.webhooks.disable(
            Context(SYSTEM, now=self.clock),
            UUID(subscription),
            cause=cause,  # type: ignore[arg-type]
            reason=reason[:REASON_MAX],
        )

    @functools.cached_property
    def scheduler(self) -> Scheduler:
        """This process's durable-timer scheduler: fires what is due through the timer's own
        stream (so it fires once, however many schedulers run), woken when the timer index
        changes."""
        scheduler = Scheduler(self.store.backend, self._fire, clock=self.clock)
        self.consumers.on_progress(
            lambda handler, _position: scheduler.wake() if handler == "timers" else None
        )
        return scheduler

    def start_scheduler(self) -> threading.Event:
        """Run a scheduler on a thread of its own until ``close`` (or the returned event)."""
        return self._start_thread("timer-scheduler", self.scheduler.run)

    def _start_thread(self, name: str, run: Callable[[threading.Event], None]) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(stop,), name=name, daemon=True)
        self._background.append((thread, stop))
        thread.start()
        return stop

    def _fire(self, timer: UUID, _due: datetime) -> None:
        self.timers.fire(Context(SYSTEM, now=self.clock), timer)

    def redeliver_webhook(self, ctx: Context, delivery: UUID) -> str:
        """A new round of attempts for one delivery (its subscription must be active or
        paused, as the log has it)."""
        ctx.principal.require("operate")
        subscription = self.webhooks.get(UUID(self.deliveries.subscription_of(str(delivery))))
        found = self.deliveries.redeliver(str(delivery), subscription.status, self.clock())
        self._wake_sender()
        return found

    def recover_webhooks(self, ctx: Context, subscription: UUID, since: int) -> Recovered:
        """Deliveries again for what the subscription matches from position ``since`` on."""
        ctx.principal.require("operate")
        state = self.webhooks.get(subscription)
        created = self.store.load(subscription, limit=1)[0].position
        recovered = self.deliveries.recover(self.store, state, created, since, self.clock())
        self._wake_sender()
        return recovered

    def _wake_sender(self) -> None:
        if "sender" in self.__dict__:  # this process runs one
            self.sender.wake()

    def skip_recorder(self, ctx: Context, reason: str) -> _SkipRecorder:
        """What ``consumers.skip_parked`` calls to record a skip as ``consumer.event_skipped``
        (the principal is checked here, before anything is marked)."""
        ctx.principal.require("administer")
        return _SkipRecorder(self.consumer_log, ctx, reason[:REASON_MAX])

    # ---- what operators do about sagas ----------------------------------------------------------

    def saga_instance(self, instance: str, saga_type: str | None = None) -> SagaView:
        """The one instance with this id (of ``saga_type``, when several types have one)."""
        found = self.sagas.get(instance, saga_type)
        if len(found) > 1:
            types = ", ".join(v.type for v in found)
            raise ValidationFailed(
                f"{instance} is an instance of several sagas ({types}): give its type",
                details={"type": types},
            )
        return found[0]

    def retry_saga(
        self, instance: str, saga_type: str | None = None, *, dry_run: bool = False
    ) -> list[RetryResult]:
        view = self.saga_instance(instance, saga_type)
        return saga_operations.retry(self.consumers, _saga(view.type), view.id, dry_run=dry_run)

    def abort_saga(
        self, ctx: Context, instance: str, saga_type: str | None = None, reason: str = ""
    ) -> saga_operations.Aborted:
        view = self.saga_instance(instance, saga_type)
        return saga_operations.abort(
            self.consumers,
            self.store,
            self.catalogue,
            _saga(view.type),
            view.id,
            ctx,
            self.skip_recorder(ctx, reason or "saga aborted"),
        )

    def close(self) -> None:
        if self.bus is not None:
            self.bus.stop()
        for thread in self.threads:
            thread.stop()
        self.threads.clear()
        for background, stop in self._background:
            stop.set()
            background.join(timeout=10)
        self._background.clear()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _saga(name: str) -> Saga[Any]:
    return next(s for s in all_sagas() if s.name == name)


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
