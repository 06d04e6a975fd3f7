"""The Azure SDK side of the ``serviceBusTrigger`` listener: the client it builds and its errors.

The listener talks to ``ClientLike``/``ReceiverLike`` (the parts of the async SDK it uses), so tests
can put a double behind the same calls; ``sdk_client`` builds the real client the way the extension's
client factory does, and ``explain_error`` turns SDK failures into log lines that name the setting,
namespace or entity to fix.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Protocol

from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusReceivedMessage, TransportType
from azure.servicebus import exceptions as sb_errors
from azure.servicebus.aio import ServiceBusClient

from local.host.triggers.servicebus_options import ServiceBusTriggerOptions
from shared.platform.servicebus_connection import ServiceBusConnection


class ReceiverLike(Protocol):
    """The part of ``azure.servicebus.aio.ServiceBusReceiver`` the listener uses."""

    async def __aenter__(self) -> object: ...

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]: ...

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def close(self) -> None: ...


class ClientLike(Protocol):
    """The part of ``azure.servicebus.aio.ServiceBusClient`` the listener uses."""

    def get_queue_receiver(self, queue_name: str, **kwargs: Any) -> ReceiverLike: ...

    def get_subscription_receiver(
        self, topic_name: str, subscription_name: str, **kwargs: Any
    ) -> ReceiverLike: ...


#: Builds the client; registers on the stack whatever must be closed with it (client, credential).
ClientFactory = Callable[[ServiceBusConnection, ServiceBusTriggerOptions, AsyncExitStack], ClientLike]


def sdk_client(
    connection: ServiceBusConnection, options: ServiceBusTriggerOptions, stack: AsyncExitStack
) -> ClientLike:
    """The real async ``ServiceBusClient``, with the extension's retry settings."""
    retry = options.retry
    settings: dict[str, Any] = {
        "retry_total": retry.max_retries,
        "retry_backoff_factor": retry.delay,
        "retry_backoff_max": retry.max_delay,
        "retry_mode": retry.mode,
        "try_timeout": retry.try_timeout,
    }
    if options.websockets:
        settings["transport_type"] = TransportType.AmqpOverWebsocket
    if connection.kind == "connection_string":
        client = ServiceBusClient.from_connection_string(connection.connection_string, **settings)
    else:
        credential = connection.credential()
        stack.push_async_callback(credential.close)
        client = ServiceBusClient(connection.fully_qualified_namespace, credential, **settings)
    stack.push_async_callback(client.close)
    return client


def explain_error(exc: BaseException, options: ServiceBusTriggerOptions, conn: ServiceBusConnection) -> str:
    """A log line for an SDK failure naming what to fix: the setting, namespace or entity."""
    where = f"{options.entity} in {conn.namespace} (connection '{conn.setting}')"
    if isinstance(exc, sb_errors.MessagingEntityNotFoundError):
        return f"{options.entity} does not exist in {conn.namespace}: create it, or fix the binding's name"
    if isinstance(exc, sb_errors.ServiceBusAuthorizationError | sb_errors.ServiceBusAuthenticationError):
        return (
            f"not authorised to receive from {where}: {exc}. An identity needs the "
            "'Azure Service Bus Data Receiver' role; a connection string needs a Listen claim"
        )
    if isinstance(exc, ClientAuthenticationError):
        return f"no token for {conn.namespace} (connection '{conn.setting}', {conn.kind}): {exc}"
    if isinstance(exc, sb_errors.MessagingEntityDisabledError):
        return f"{where} is disabled: {exc}"
    if isinstance(exc, ValueError):
        return f"connection '{conn.setting}' cannot be used: {exc}"
    return f"cannot receive from {where}: {type(exc).__name__}: {exc}"


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help without a configuration change (refuse to start on these)."""
    permanent = (
        sb_errors.MessagingEntityNotFoundError,
        sb_errors.ServiceBusAuthorizationError,
        sb_errors.ServiceBusAuthenticationError,
        ClientAuthenticationError,
        ValueError,
    )
    return isinstance(exc, permanent)
