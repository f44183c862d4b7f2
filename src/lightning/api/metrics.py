"""Prometheus metrics: projection positions and lag, the store's head, read at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar import Response
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from ..bootstrap import Lightning


def metrics_response(app: Lightning) -> Response[bytes]:
    registry = CollectorRegistry()
    head = Gauge(
        "lightning_event_store_position", "Highest position in the event store", registry=registry
    )
    position = Gauge(
        "lightning_projection_position", "Last position applied", ["projection"], registry=registry
    )
    lag = Gauge(
        "lightning_projection_lag", "Events not yet applied", ["projection"], registry=registry
    )
    stalled = Gauge(
        "lightning_projection_stalled",
        "1 if the projection is stalled",
        ["projection"],
        registry=registry,
    )
    stale = Gauge(
        "lightning_projection_stale",
        "1 if no worker has reported for this projection lately",
        ["projection"],
        registry=registry,
    )
    statuses = app.projections.statuses()
    head.set(max((s.position + s.lag for s in statuses), default=0))
    for s in statuses:
        position.labels(s.name).set(s.position)
        lag.labels(s.name).set(s.lag)
        stalled.labels(s.name).set(1 if s.status == "stalled" else 0)
        stale.labels(s.name).set(1 if s.status == "stale" else 0)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
