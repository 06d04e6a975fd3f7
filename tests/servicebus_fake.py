"""A Service Bus queue behind the async SDK's receiver API, for the ``serviceBusTrigger`` tests.

Messages are what the SDK hands out: real ``ServiceBusReceivedMessage`` objects, built from an SDK
``ServiceBusMessage`` the way it travels (converted to AMQP, stamped with the broker's annotations,
encoded and decoded with the SDK's own codec), so their types are the wire's (text as bytes,
timestamps in ms). The queue keeps Service Bus's delivery rules: a receive locks a message, complete
removes it, abandon unlocks it with one more delivery counted, and a message abandoned
``max_delivery_count`` times moves to the dead-letter list (reason ``MaxDeliveryCountExceeded``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpAnnotatedMessage
from azure.servicebus.exceptions import MessageAlreadySettled

LOCK_DURATION_MS = 60_000


def received_message(
    sent: ServiceBusMessage | AmqpAnnotatedMessage,
    *,
    sequence_number: int = 1,
    prior_deliveries: int = 0,
    enqueued_ms: int | None = None,
    lock_token: uuid.UUID | None = None,
    annotations: dict[bytes, Any] | None = None,
    wire_properties: dict[str, Any] | None = None,
    receiver: object = None,
) -> ServiceBusReceivedMessage:
    """``sent`` as a peek-lock receive returns it from the broker.

    ``wire_properties`` are application properties as another client may send them (the Python SDK
    turns bytes into text before sending, .NET sends ``byte[]`` as AMQP binary).
    """
    enqueued_ms = enqueued_ms if enqueued_ms is not None else int(time.time() * 1000)
    raw = sent.raw_amqp_message if isinstance(sent, ServiceBusMessage) else sent
    outgoing = PyamqpTransport.to_outgoing_amqp_message(raw)
    header = outgoing.header or Header()
    broker_annotations = {
        b"x-opt-enqueued-time": {TYPE: AMQPTypes.timestamp, VALUE: enqueued_ms},
        b"x-opt-sequence-number": {TYPE: AMQPTypes.long, VALUE: sequence_number},
        b"x-opt-locked-until": {TYPE: AMQPTypes.timestamp, VALUE: enqueued_ms + LOCK_DURATION_MS},
    }
    on_the_wire = outgoing._replace(
        # The AMQP header counts earlier deliveries; the first delivery carries 0.
        header=header._replace(delivery_count=prior_deliveries),
        message_annotations={
            **(outgoing.message_annotations or {}),
            **broker_annotations,
            **(annotations or {}),
        },
        application_properties={**(outgoing.application_properties or {}), **(wire_properties or {})} or None,
    )
    encoded = bytearray()
    encode_payload(encoded, on_the_wire)
    return ServiceBusReceivedMessage(
        decode_payload(memoryview(bytes(encoded))),
        receiver=receiver,
        frame=None,
        lock_token=lock_token or uuid.uuid4(),
    )


@dataclass
class Entry:
    """One message in the queue and its delivery state."""

    sent: ServiceBusMessage
    sequence_number: int
    enqueued_ms: int
    prior_deliveries: int = 0
    locked_by: uuid.UUID | None = None
    dead_letter_reason: str | None = None


@dataclass
class FakeServiceBus:
    """One queue (or subscription) and a record of what the listener did to it."""

    max_delivery_count: int = 10
    available: list[Entry] = field(default_factory=list)
    locked: dict[uuid.UUID, Entry] = field(default_factory=dict)
    dead_letters: list[Entry] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    receive_requests: list[int] = field(default_factory=list)
    receiver_settings: dict[str, Any] = field(default_factory=dict)
    entity: tuple[str, ...] = ()
    closed: list[str] = field(default_factory=list)
    #: Raised by the next receive calls, in order (connection drops, missing entities...).
    receive_errors: list[BaseException] = field(default_factory=list)
    open_error: BaseException | None = None
    #: While clear, receives wait; lets a test hold a receive open across a stop.
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.gate.set()

    def send(self, body: bytes | str, **properties: Any) -> str:
        """Enqueue a message as a sender would; returns its message id."""
        properties.setdefault("message_id", str(uuid.uuid4()))
        message = ServiceBusMessage(body, **properties)
        self.available.append(Entry(message, next(self._sequence), int(time.time() * 1000)))
        return str(properties["message_id"])

    # The client factory the listener calls: ServiceBusListener(..., client_factory=fake.factory).
    def factory(self, connection: object, options: object, stack: AsyncExitStack) -> FakeServiceBus:
        stack.push_async_callback(self._close, "client")
        return self

    def get_queue_receiver(self, queue_name: str, **settings: Any) -> FakeReceiver:
        self.entity, self.receiver_settings = (queue_name,), settings
        return FakeReceiver(self)

    def get_subscription_receiver(self, topic: str, subscription: str, **settings: Any) -> FakeReceiver:
        self.entity, self.receiver_settings = (topic, subscription), settings
        return FakeReceiver(self)

    async def _close(self, what: str) -> None:
        self.closed.append(what)

    def settle(self, message: ServiceBusReceivedMessage, *, complete: bool) -> None:
        token = message.lock_token
        assert isinstance(token, uuid.UUID)
        entry = self.locked.pop(token, None)
        if entry is None:
            raise MessageAlreadySettled(action="complete" if complete else "abandon")
        entry.locked_by = None
        (self.completed if complete else self.abandoned).append(str(message.message_id))
        if complete:
            return
        entry.prior_deliveries += 1
        if entry.prior_deliveries >= self.max_delivery_count:
            entry.dead_letter_reason = "MaxDeliveryCountExceeded"
            self.dead_letters.append(entry)
        else:
            self.available.append(entry)


class FakeReceiver:
    """The receiver the listener gets; each method does what the service does for it."""

    def __init__(self, bus: FakeServiceBus) -> None:
        self.bus = bus

    async def __aenter__(self) -> FakeReceiver:
        if self.bus.open_error is not None:
            raise self.bus.open_error
        return self

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        count = max_message_count or 1
        self.bus.receive_requests.append(count)
        if self.bus.receive_errors:
            raise self.bus.receive_errors.pop(0)
        deadline = time.monotonic() + (max_wait_time or 0.05)
        while not self.bus.available or not self.bus.gate.is_set():
            if time.monotonic() >= deadline and self.bus.gate.is_set():
                return []
            await asyncio.sleep(0.002)
        taken, self.bus.available[:count] = self.bus.available[:count], []
        return [self._lock(entry) for entry in taken]

    def _lock(self, entry: Entry) -> ServiceBusReceivedMessage:
        token = uuid.uuid4()
        entry.locked_by = token
        self.bus.locked[token] = entry
        return received_message(
            entry.sent,
            sequence_number=entry.sequence_number,
            prior_deliveries=entry.prior_deliveries,
            enqueued_ms=entry.enqueued_ms,
            lock_token=token,
            receiver=self,
        )

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self.bus.settle(message, complete=True)

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        self.bus.settle(message, complete=False)

    async def close(self) -> None:
        self.bus.closed.append("receiver")
