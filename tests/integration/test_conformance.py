"""eventsourcing's own recorder test cases, unmodified, against what Lightning builds:

* the tracking stores (they extend eventsourcing's tracking recorders) — TrackingRecorderTestCase;
* the application recorders as Lightning configures them — ApplicationRecorderTestCase;
* appends through Lightning's group-commit writer — NonInterleavingNotificationIDsBaseCase,
  proving that batching many commands into one transaction never interleaves positions.

Each runs on SQLite and on a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    Notification,
    StoredEvent,
    Subscription,
    TrackingRecorder,
)
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
    TrackingRecorderTestCase,
)

from lightning.consumers import open_tracking_store
from lightning.domain.errors import ConcurrencyConflict
from lightning.store.backends import Backend, PostgresBackend, open_backend
from lightning.store.group_commit import GroupCommitWriter
from lightning.store.migrations import Migrator

from ..conftest import POSTGRES_ADMIN_URL, service_missing


class _Databases:
    """Creates a database (or file) per test and removes it afterwards (unittest style)."""

    kind: ClassVar[str]
    backends: list[Backend]
    cleanup: list[Any]

    def setUp(self) -> None:
        self.backends, self.cleanup = [], []
        self.threads_before = set(threading.enumerate())
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        # Some cases signal their reader threads to stop but do not wait for them: let them
        # finish their last query before the pool is closed under them.
        for thread in set(threading.enumerate()) - self.threads_before:
            if not thread.daemon:  # theirs; pools and writers run daemon threads until closed
                thread.join(timeout=30)
        for backend in self.backends:
            backend.close()
        for action in self.cleanup:
            action()

    def backend(self) -> Backend:
        if self.kind == "sqlite":
            folder = tempfile.TemporaryDirectory()
            self.cleanup.append(folder.cleanup)
            backend = open_backend(f"sqlite:///{folder.name}/lightning.db")
        else:
            backend = open_backend(self._postgres_database())
        self.backends.append(backend)
        Migrator(backend).migrate()
        if isinstance(backend, PostgresBackend):
            backend.schema_ready()
        return backend

    def _postgres_database(self) -> str:
        name = f"lightning_conf_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as exc:
            service_missing("PostgreSQL", exc)  # fails under CI, skips on a laptop

        def drop() -> None:
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        self.cleanup.append(drop)
        return POSTGRES_ADMIN_URL.rpartition("/")[0] + f"/{name}"


class GroupCommitRecorder(ApplicationRecorder):
    """An ApplicationRecorder whose inserts go through Lightning's group-commit writer."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self.recorder = recorder
        self.writer = GroupCommitWriter(recorder)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        try:
            return self.writer.append(stored_events)
        except ConcurrencyConflict as exc:
            raise IntegrityError(str(exc)) from exc

    def select_events(self, originator_id: Any, **kwargs: Any) -> Sequence[StoredEvent]:
        return self.recorder.select_events(originator_id, **kwargs)

    def select_notifications(self, *args: Any, **kwargs: Any) -> Sequence[Notification]:
        return self.recorder.select_notifications(*args, **kwargs)

    def max_notification_id(self) -> int | None:
        return self.recorder.max_notification_id()

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[Any]:
        return self.recorder.subscribe(gt, topics)


# ---- read stores: TrackingRecorderTestCase ------------------------------------------------------


class TestSQLiteTrackingStore(_Databases, TrackingRecorderTestCase):
    kind = "sqlite"

    def create_recorder(self) -> TrackingRecorder:
        store = open_tracking_store(self.backend())
        assert isinstance(store, TrackingRecorder)
        return store


class TestPostgresTrackingStore(_Databases, TrackingRecorderTestCase):
    kind = "postgres"

    def create_recorder(self) -> TrackingRecorder:
        store = open_tracking_store(self.backend())
        assert isinstance(store, TrackingRecorder)
        return store


# ---- application recorders as configured: ApplicationRecorderTestCase ---------------------------


class TestSQLiteApplicationRecorder(_Databases, ApplicationRecorderTestCase[ApplicationRecorder]):
    kind = "sqlite"

    def create_recorder(self) -> ApplicationRecorder:
        return self.backend().recorder


class TestPostgresApplicationRecorder(_Databases, ApplicationRecorderTestCase[ApplicationRecorder]):
    kind = "postgres"

    def create_recorder(self) -> ApplicationRecorder:
        return self.backend().recorder


# ---- group commit: NonInterleavingNotificationIDsBaseCase ---------------------------------------


class TestSQLiteGroupCommitNonInterleaving(_Databases, NonInterleavingNotificationIDsBaseCase):
    kind = "sqlite"

    def create_recorder(self) -> ApplicationRecorder:
        recorder = GroupCommitRecorder(self.backend().recorder)
        self.cleanup.append(recorder.writer.close)
        return recorder


class TestPostgresGroupCommitNonInterleaving(_Databases, NonInterleavingNotificationIDsBaseCase):
    kind = "postgres"

    def create_recorder(self) -> ApplicationRecorder:
        recorder = GroupCommitRecorder(self.backend().recorder)
        self.cleanup.append(recorder.writer.close)
        return recorder


del os
