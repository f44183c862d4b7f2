"""The webhook dispatcher in distributed mode: `lightning worker webhooks` killed with SIGKILL
while retries are pending loses no delivery — every event reaches the receiver (at least once,
each under its one webhook-id) once a worker runs again."""

from __future__ import annotations

import threading

from lightning.bootstrap import Lightning
from lightning.services import SYSTEM, Context

from .cluster import Cluster
from .webhook_support import Received, Receiver, Reply, eventually

GROK = {"provider": "grok", "model": "grok-code-fast-1"}
WORKER_ENV = {
    "LIGHTNING_WEBHOOK_ALLOW_PRIVATE": "true",
    "LIGHTNING_WEBHOOK_RETRY_SCHEDULE": "700ms,700ms,700ms,700ms,700ms,700ms,700ms",
    "LIGHTNING_WEBHOOK_TIMEOUT": "2",
    "LIGHTNING_WEBHOOK_POLL": "0.05",
}


class FailFirst:
    """500 to each webhook-id's first attempt, 200 after that."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, received: Received) -> Reply:
        with self.lock:
            first = received.id not in self.seen
            self.seen.add(received.id)
        return (500, {}, b"not yet") if first else (200, {}, b"ok")


def pending_retries(app: Lightning) -> int:
    rows = app.store.backend.query(
        "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'PENDING' AND attempts > 0"
    )
    return int(rows[0]["n"])


def succeeded(app: Lightning) -> int:
    rows = app.store.backend.query(
        "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'SUCCEEDED'"
    )
    return int(rows[0]["n"])


def test_kill_9_of_the_webhook_worker_with_pending_retries_loses_no_delivery(
    cluster: Cluster,
) -> None:
    receiver = Receiver(respond=FailFirst()).start()
    cluster.start_worker("relay", "projections", "sagas")
    worker = cluster.start_worker("webhooks", **WORKER_ENV)
    settings = cluster.settings().model_copy(update={"webhook_allow_private": True})
    app = Lightning.open(settings)
    try:
        made = app.webhooks.subscribe(
            Context(SYSTEM), url=receiver.url(), event_types=["agent.registered"]
        )
        assert made.secret is not None
        receiver.secrets.append(made.secret)
        positions = [
            app.agents.register(Context(SYSTEM), name=f"agent-{i}", **GROK).position
            for i in range(40)
        ]
        eventually(lambda: pending_retries(app) >= 5, timeout=60, what="retries pending")
        worker.kill()  # SIGKILL: in-flight attempts are cut, their leases left to run out
        worker.wait(timeout=15)
        assert pending_retries(app) > 0
        before = succeeded(app)
        cluster.start_worker("webhooks", **WORKER_ENV)
        eventually(lambda: succeeded(app) == 40, timeout=90, what="every delivery succeeded")
        assert before < 40
        answered = {r.id for r in receiver.at()}
        assert len(answered) == 40
        delivered = {r.json["data"]["position"] for r in receiver.at()}
        assert delivered == set(positions)
        assert all(r.verified_by == receiver.secrets for r in receiver.at())
        failed = app.store.backend.query(
            "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status <> 'SUCCEEDED'"
        )
        assert failed[0]["n"] == 0
    finally:
        app.close()
        receiver.stop()
