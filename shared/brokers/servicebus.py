"""Service Bus broker (Azure profile): the async SDK, an identity-based connection, message id = task id.

One ``ServiceBusClient`` and one queue sender per broker, made on first use and kept: opening a
connection and a link costs round trips and a token exchange, far too much per request. The SDK's
sender and batches are not coroutine-safe (its README says so) while concurrent invocations share
this broker, so sends take turns behind a lock. The backlog comes from the administration client
(HTTPS), whose queue runtime properties carry the active, dead-lettered and scheduled counts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.servicebus import (
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    parse_connection_string,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
)

from shared.brokers.base import Backlog, Broker, OutgoingMessage
from shared.errors import BrokerError, ConfigError
from shared.platform.servicebus_connection import ServiceBusConnection

log = logging.getLogger(__name__)

#: Service Bus refuses a batch of more messages than this whatever their size; this SDK does not check.
MAX_MESSAGES_PER_BATCH = 4500
#: Bytes kept free in each batch for the batch envelope's properties (a message id is at most 128 chars).
ENVELOPE_ROOM = 256

# The AMQP side (send) and the HTTP side (backlog, credentials) each report a refusal their own way.
_ACCESS_ERRORS = (ServiceBusAuthenticationError, ServiceBusAuthorizationError, ClientAuthenticationError)


class ServiceBusBroker(Broker):
    """Sends to one Service Bus queue in as few batches as the size limit allows.

    Dead letters go to the queue ``<queue>.dead-letter``: Service Bus lets no client write to a
    queue's own dead-letter subqueue, so infra/ makes that queue and forwards the work queue's own
    dead letters (``forwardDeadLetteredMessagesTo``) there too; every dead letter is in one place.

    ``retry_total`` is how often the SDK retries a failed send or backlog read (its own default).
    ``http_transport`` replaces the administration client's HTTP transport; tests pass a double.
    """

    system = "servicebus"

    def __init__(
        self,
        connection: ServiceBusConnection,
        queue: str,
        *,
        retry_total: int = 3,
        http_transport: AsyncHttpTransport[Any, Any] | None = None,
    ) -> None:
        self.queue = queue
        self._connection = connection
        self._retry_total = retry_total
        self._http_transport = http_transport
        self._credential: Any = None
        self._client: ServiceBusClient | None = None
        self._senders: dict[str, ServiceBusSender] = {}
        self._admin: ServiceBusAdministrationClient | None = None
        self._batch_bytes: int | None = None
        self._lock = asyncio.Lock()

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead-letter"

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message; each batch returns once Service Bus has acknowledged it."""
        await self._send(self.queue, messages)

    async def dead_letter(self, messages: Sequence[OutgoingMessage]) -> None:
        await self._send(self.dead_letter_queue, messages)

    async def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        async with self._lock:
            try:
                sender = self._queue_sender(queue)
                # Batch everything before sending anything, so a message that can never fit fails
                # the call without half of it enqueued.
                batches = await self._batches(sender, messages, queue)
                for batch in batches:
                    await sender.send_messages(batch)
            except AzureError as exc:
                raise _broker_error(f"send {len(messages)} messages to", queue, exc) from exc
        ids = ", ".join(m.id for m in messages)
        log.debug("sent tasks %s to '%s' in %d batch(es)", ids, queue, len(batches))

    async def drain_dead_letters(self, decide: Callable[[OutgoingMessage], Awaitable[bool]]) -> None:
        """Receive the dead-letter queue's messages in peek-lock, up to the count it had; complete those
        ``decide`` takes and abandon the rest when done (the queue's delivery limit is set high in
        infra/ for this)."""
        admin = self._administration()
        try:
            properties = await admin.get_queue_runtime_properties(self.dead_letter_queue)
            waiting = properties.active_message_count or 0
            receiver = self._servicebus_client().get_queue_receiver(
                self.dead_letter_queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK
            )
            async with receiver:
                # Whatever is received and not completed is abandoned, also when ``decide`` raises:
                # a locked letter would be out of reach until its lock expired.
                held: list[ServiceBusReceivedMessage] = []
                try:
                    seen = 0
                    while seen < waiting:
                        batch = await receiver.receive_messages(
                            max_message_count=min(100, waiting - seen), max_wait_time=2
                        )
                        if not batch:
                            break
                        seen += len(batch)
                        held += batch
                        for received in batch:
                            if await decide(_letter(received)):
                                await receiver.complete_message(received)
                                held.remove(received)
                finally:
                    for received in held:
                        await receiver.abandon_message(received)
        except AzureError as exc:
            raise _broker_error("read the dead letters of", self.dead_letter_queue, exc) from exc

    async def backlog(self) -> Backlog:
        """Active and scheduled messages of the queue, and every dead letter: those in the queue's own
        dead-letter subqueue and those in ``<queue>.dead-letter``, as Service Bus reports them."""
        admin = self._administration()
        try:
            work, dead = await asyncio.gather(
                admin.get_queue_runtime_properties(self.queue),
                admin.get_queue_runtime_properties(self.dead_letter_queue),
            )
        except AzureError as exc:
            raise _broker_error("read the backlog of", self.queue, exc) from exc
        return Backlog(
            self.queue,
            active=work.active_message_count or 0,
            dead_lettered=(work.dead_letter_message_count or 0) + (dead.active_message_count or 0),
            scheduled=work.scheduled_message_count,
        )

    async def close(self) -> None:
        """Close the sender, clients and credential; the next call opens new ones."""
        async with self._lock:  # let a send in flight finish rather than cut its link
            closeables = (*self._senders.values(), self._client, self._admin, self._credential)
            self._senders = {}
            self._client = self._admin = self._credential = None
            self._batch_bytes = None  # a new link may report another limit
        for closeable in closeables:
            if closeable is None:
                continue
            try:
                await closeable.close()
            except (AzureError, OSError) as exc:
                # Nothing to retry on close; the connection is abandoned either way.
                log.warning("closing %s for '%s' failed: %s", type(closeable).__name__, self.queue, exc)

    async def _batches(
        self, sender: ServiceBusSender, messages: Sequence[OutgoingMessage], queue: str
    ) -> list[ServiceBusMessageBatch]:
        batches: list[ServiceBusMessageBatch] = []
        for message in messages:
            outgoing = _servicebus_message(message)
            if batches and len(batches[-1]) < MAX_MESSAGES_PER_BATCH and _added(batches[-1], outgoing):
                continue
            batches.append(await self._empty_batch(sender))
            if not _added(batches[-1], outgoing):
                raise _too_large(message, queue, batches[-1].max_size_in_bytes)
        return batches

    async def _empty_batch(self, sender: ServiceBusSender) -> ServiceBusMessageBatch:
        if self._batch_bytes is None:
            # The link's limit, read by the SDK when it attaches; less room for the envelope, which
            # the SDK leaves out of its count although it copies the first message's id onto it.
            link_limit = (await sender.create_message_batch()).max_size_in_bytes
            self._batch_bytes = link_limit - ENVELOPE_ROOM
        return await sender.create_message_batch(self._batch_bytes)

    def _queue_sender(self, queue: str) -> ServiceBusSender:
        if queue not in self._senders:
            # The sender opens its link lazily, on the first batch it is asked for.
            self._senders[queue] = self._servicebus_client().get_queue_sender(queue)
        return self._senders[queue]

    def _servicebus_client(self) -> ServiceBusClient:
        if self._client is None:
            if self._connection.kind != "connection_string":
                self._client = ServiceBusClient(
                    self._connection.fully_qualified_namespace,
                    credential=self._identity(),
                    retry_total=self._retry_total,
                )
            else:
                self._client = ServiceBusClient.from_connection_string(
                    self._connection_string(), retry_total=self._retry_total
                )
        return self._client

    def _administration(self) -> ServiceBusAdministrationClient:
        if self._admin is None:
            options: dict[str, Any] = {"retry_total": self._retry_total}
            if self._http_transport is not None:
                options["transport"] = self._http_transport
            if self._connection.kind != "connection_string":
                namespace = self._connection.fully_qualified_namespace
                self._admin = ServiceBusAdministrationClient(namespace, self._identity(), **options)
            else:
                self._admin = ServiceBusAdministrationClient.from_connection_string(
                    self._connection_string(), **options
                )
        return self._admin

    def _identity(self) -> Any:
        if self._credential is None:
            # As the trigger builds it from the same setting (credential, clientId...).
            self._credential = self._connection.credential()
        return self._credential

    def _connection_string(self) -> str:
        value = self._connection.connection_string
        try:
            parse_connection_string(value)
        except ValueError as exc:
            # Name the setting, which the SDK cannot; its reasons never quote the value.
            raise ConfigError(
                f"{self._connection.setting} is not a Service Bus connection string: {exc}"
            ) from None
        return value


def _servicebus_message(message: OutgoingMessage) -> ServiceBusMessage:
    # Typed as Any-valued because the SDK's property map is invariant in its value type.
    properties: dict[str | bytes, Any] = {key: value for key, value in message.headers.items()}
    return ServiceBusMessage(
        message.body,
        message_id=message.id,
        application_properties=properties or None,
        content_type=message.content_type,
        scheduled_enqueue_time_utc=message.scheduled_at,
    )


def _added(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    """Add ``message`` if the batch has room; the SDK answers "no room" with an exception."""
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def _too_large(message: OutgoingMessage, queue: str, limit: int) -> BrokerError:
    return BrokerError(
        f"message '{message.id}' for queue '{queue}' is too large for Service Bus:"
        f" {len(message.body)} body bytes, and a batch holds at most {limit} bytes"
    )


def _broker_error(action: str, queue: str, exc: AzureError) -> BrokerError:
    """Name the queue, what failed, and the SDK's own reason on one line."""
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    if isinstance(exc, (MessagingEntityNotFoundError, ResourceNotFoundError)) or status == 404:
        kind = "the queue does not exist"
    elif isinstance(exc, _ACCESS_ERRORS) or status in (401, 403):
        kind = "access was refused (check the key's claims, or the identity's Service Bus role)"
    else:
        kind = type(exc).__name__
    reason = str(exc.message or exc)
    detail = _error_detail(exc)
    if detail and detail not in reason:
        reason = f"{reason} ({detail})"
    return BrokerError(f"Service Bus could not {action} queue '{queue}': {kind}: {' '.join(reason.split())}")


def _error_detail(exc: AzureError) -> str | None:
    """The ``<Detail>`` of Service Bus's XML error body, which the SDK leaves out of a 401's message."""
    if not isinstance(exc, HttpResponseError) or exc.response is None:
        return None
    try:
        found = re.search(r"<Detail>(.*?)</Detail>", exc.response.text(), re.DOTALL)
    except (UnicodeDecodeError, ValueError):
        return None
    return found.group(1).strip() if found else None


def _letter(received: ServiceBusReceivedMessage) -> OutgoingMessage:
    properties = received.application_properties or {}
    return OutgoingMessage(
        str(received.message_id or ""),
        b"".join(received.body),
        {_text(k): _text(v) for k, v in properties.items()},
    )


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
