"""Prometheus metrics, read at scrape time: the store's head, and for every handler of every
consumer kind its position, lag, status and parked events (projections also under their
historical ``lightning_projection_*`` names); saga instances by status; pending and overdue
durable timers; webhook deliveries by status, attempts by outcome with their latency, pending
retries and subscriptions by status (read from the delivery records, so every process's
sender counts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from litestar import Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..projections import KIND as PROJECTIONS
from ..sagas import KIND as SAGAS
from ..sagas import STATUSES as SAGA_STATUSES
from ..webhooks import STATUSES as DELIVERY_STATUSES
from ..webhooks.deliveries import LATENCY_BUCKETS

if TYPE_CHECKING:
    from ..bootstrap import Lightning

STATUSES = ("running", "catching_up", "retrying", "degraded", "stale")


def metrics_response(app: Lightning) -> Response[bytes]:
    registry = CollectorRegistry()
    labels = ["consumer", "handler"]

    def gauge(name: str, text: str, names: list[str] = labels) -> Gauge:
        return Gauge(name, text, names, registry=registry)

    head = Gauge(
        "lightning_event_store_position", "Highest position in the event store", registry=registry
    )
    position = gauge("lightning_consumer_position", "Last position a handler applied")
    lag = gauge("lightning_consumer_lag", "Events a handler has not applied yet")
    parked = gauge("lightning_consumer_parked_events", "Events a handler parked")
    status = gauge("lightning_consumer_status", "1 for the handler's status", [*labels, "status"])
    p_position = gauge("lightning_projection_position", "Last position applied", ["projection"])
    p_lag = gauge("lightning_projection_lag", "Events not yet applied", ["projection"])
    p_stale = gauge(
        "lightning_projection_stale",
        "1 if no worker has reported for this projection lately",
        ["projection"],
    )
    statuses = app.consumers.statuses()
    head.set(max((s.position + s.lag for s in statuses), default=0))
    for s in statuses:
        position.labels(s.kind, s.name).set(s.position)
        lag.labels(s.kind, s.name).set(s.lag)
        parked.labels(s.kind, s.name).set(s.parked)
        for value in STATUSES:
            status.labels(s.kind, s.name, value).set(1 if s.status == value else 0)
        if s.kind == PROJECTIONS:
            p_position.labels(s.name).set(s.position)
            p_lag.labels(s.name).set(s.lag)
            p_stale.labels(s.name).set(1 if s.status == "stale" else 0)
    instances = gauge("lightning_saga_instances", "Saga instances by status", ["saga", "status"])
    counts = app.sagas.counts()
    for saga in app.consumers.handler_names(SAGAS):
        if saga == "timers":
            continue
        for value in SAGA_STATUSES:
            instances.labels(saga, value).set(counts.get((saga, value), 0))
    pending, overdue = app.sagas.timers(app.clock())
    Gauge(
        "lightning_timers_pending", "Durable timers scheduled, not yet fired", registry=registry
    ).set(pending)
    Gauge(
        "lightning_timers_overdue",
        "Pending timers more than 5 s past due (is a saga worker running?)",
        registry=registry,
    ).set(overdue)
    _webhooks(app, registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _webhooks(app: Lightning, registry: CollectorRegistry) -> None:
    deliveries = Gauge(
        "lightning_webhook_deliveries",
        "Webhook deliveries by status",
        ["status"],
        registry=registry,
    )
    counts = app.deliveries.counts()
    for value in DELIVERY_STATUSES:
        deliveries.labels(value).set(counts.get(value, 0))
    Gauge(
        "lightning_webhook_pending_retries",
        "Deliveries waiting for a retry after a failed attempt",
        registry=registry,
    ).set(app.deliveries.pending_retries())
    endpoints = Gauge(
        "lightning_webhook_subscriptions",
        "Webhook subscriptions by status (disabled: by failures, a 410 or an operator)",
        ["status"],
        registry=registry,
    )
    by_status = app.deliveries.endpoint_counts()
    for state in ("active", "paused", "disabled", "deleted"):
        endpoints.labels(state).set(by_status.get(state, 0))
    registry.register(_AttemptLatency(app))


class _AttemptLatency(Collector):
    """``lightning_webhook_attempt_duration_seconds{outcome}``: a histogram per outcome
    (success, http_4xx, http_5xx, error, refused); its _count is the attempts by outcome."""

    def __init__(self, app: Lightning) -> None:
        self.rows = app.deliveries.attempt_stats()

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "lightning_webhook_attempt_duration_seconds",
            "Webhook delivery attempts by outcome, and how long they took",
            labels=["outcome"],
        )
        outcomes: dict[str, dict[str, tuple[int, float]]] = {}
        for row in self.rows:
            outcomes.setdefault(row["outcome"], {})[row["le"]] = (
                int(row["count"]),
                float(row["total_ms"]),
            )
        for outcome, buckets in sorted(outcomes.items()):
            cumulative, total, points = 0, 0.0, []
            for le in [*map(str, LATENCY_BUCKETS), "+Inf"]:
                count, spent = buckets.get(le, (0, 0.0))
                cumulative += count
                total += spent
                bound = le if le == "+Inf" else str(int(le) / 1000)
                points.append((bound, float(cumulative)))
            family.add_metric([outcome], points, total / 1000)
        yield family
