"""Prometheus metrics, read at scrape time: the store's head, and for every handler of every
consumer kind its position, lag, status and parked events (projections also under their
historical ``lightning_projection_*`` names); saga instances by status; pending and overdue
durable timers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..projections import KIND as PROJECTIONS
from ..sagas import KIND as SAGAS
from ..sagas import STATUSES as SAGA_STATUSES

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
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
