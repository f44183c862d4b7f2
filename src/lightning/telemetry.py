"""Tracing set-up and the messaging spans aio-pika 10's instrumentation does not produce."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

_configured = False


def configure_tracing(service: str) -> None:
    """Install the SDK tracer provider once per process so spans carry real trace ids
    (exporters are configured by the standard OTEL_* environment when the SDK is extended)."""
    global _configured
    if _configured:
        return
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": service})))
    _configured = True


tracer = trace.get_tracer("lightning")
