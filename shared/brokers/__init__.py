"""Brokers behind one small contract; :func:`create_broker` picks one by profile."""

from __future__ import annotations

from shared.brokers.base import Backlog, Broker, OutgoingMessage
from shared.pipeline.settings import Settings

__all__ = ["Backlog", "Broker", "OutgoingMessage", "create_broker"]


def create_broker(settings: Settings) -> Broker:
    """RabbitMQ for the local profile, Service Bus for Azure (imported only where used)."""
    settings.require_broker()
    if settings.profile == "local":
        from shared.brokers.rabbitmq import RabbitMQBroker

        assert settings.rabbitmq_url is not None
        return RabbitMQBroker(settings.rabbitmq_url, settings.tasks_queue)
    from shared.brokers.servicebus import ServiceBusBroker

    assert settings.servicebus is not None
    return ServiceBusBroker(settings.servicebus, settings.tasks_queue)
