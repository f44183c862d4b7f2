"""Transports only: publishing (the outbox relay to RabbitMQ, the in-process bus), the AMQP
session and the wire format. What consumes deliveries lives in ``consumers/``."""

from .delivery import Delivery

__all__ = ["Delivery"]
