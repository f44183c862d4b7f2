"""Transports that fan events out to consumers, and the one consumer mechanism they share."""

from .consumer import Delivery, Handler, TrackedConsumer

__all__ = ["Delivery", "Handler", "TrackedConsumer"]
