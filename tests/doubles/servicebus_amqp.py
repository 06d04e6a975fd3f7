"""A Service Bus namespace on a local TCP port, speaking AMQP 1.0 as the service does to a sender.

The real ``azure-servicebus`` client connects to it unchanged: a connection string with
``UseDevelopmentEmulator=true`` (the switch the SDK has for the Service Bus emulator) makes the SDK
use plain TCP and keep the port, so everything above the socket — connection, session, the CBS
token exchange, links, message encoding, batching, settlement and error mapping — is the SDK's own.

What the double answers, and how the service answers the same:

* SASL ANONYMOUS, then a claims-based-security ``put-token`` on ``$cbs``; the SAS token is checked
  against the namespace key (HMAC-SHA256 over the url-encoded audience and expiry), 401 otherwise.
* A sender link to a queue that does not exist gets an attach without a target, then a detach with
  ``amqp:not-found``; a link without a token for its audience gets ``amqp:unauthorized-access``.
* The attach carries ``max-message-size`` and ``com.microsoft:max-message-batch-size``, which the SDK
  reads to size its batches; a transfer larger than that (the whole encoded message, batch envelope
  included) is rejected with ``amqp:link:message-size-exceeded``, and a batch of more than 4500
  messages with the service's unhelpful ``amqp:internal-error``.
* Each delivery is settled with ``accepted`` (or ``rejected`` with the condition set in
  ``reject_next``), after ``ack_delay`` seconds.

And to a receiver:

* A receive-and-delete link (``snd-settle-mode`` settled) gets each delivery settled; the message
  leaves the queue as it goes out.
* A peek-lock link (``snd-settle-mode`` unsettled, ``rcv-settle-mode`` second) gets each delivery
  unsettled, its delivery tag a lock token (a UUID, which the SDK reads as ``lock_token``) and
  ``x-opt-locked-until`` set; the message stays on the queue, locked, and counts as active. The
  client's disposition decides: ``accepted`` (complete) removes it; ``modified`` or ``released``
  (abandon) puts it back in its place, its delivery count one higher; ``rejected`` (dead-letter)
  moves it to the queue's own dead-letter subqueue. A message abandoned ``max_delivery_count`` times
  is dead-lettered as the service does (``MaxDeliveryCountExceeded``). An unsettled disposition
  (the SDK waits for the outcome in peek-lock) is answered with the outcome applied, settled, or
  with ``com.microsoft:message-lock-lost`` for a lock the namespace does not hold.
* A lock outlives its link and connection, as on the service (the SDK releases only what it had
  buffered, for that reason): a message received and never settled stays locked until
  ``lock_duration`` seconds have passed, then is back on the queue one delivery more.
* Every delivery carries the header's ``delivery-count`` (0 on the first delivery, as the Python
  SDK reports it) and ``x-opt-sequence-number`` / ``x-opt-enqueued-time``.

It borrows the SDK's AMQP codec (``azure.servicebus._pyamqp``) for frames, as any AMQP peer would
use a codec; the protocol decisions above are the double's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, quote_plus, urlparse

from azure.servicebus._pyamqp import performatives as frames
from azure.servicebus._pyamqp._decode import _DECODE_BY_CONSTRUCTOR, decode_frame, decode_payload
from azure.servicebus._pyamqp._encode import encode_frame, encode_payload
from azure.servicebus._pyamqp.endpoints import Source, Target
from azure.servicebus._pyamqp.error import AMQPError
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azure.servicebus._pyamqp.outcomes import Accepted, Modified, Rejected, Released
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes

KEY_NAME = "RootManageSharedAccessKey"
KEY = base64.b64encode(b"tasklane-test-namespace-key-0001").decode()

#: Messages the service takes in one batch, whatever their size.
MAX_BATCH_COUNT = 4500
#: A queue's delivery limit when infra/ sets none (Service Bus's default).
DEFAULT_MAX_DELIVERY_COUNT = 10
#: How long a peek-lock receiver holds a message (the queues' lockDuration in infra/).
LOCK_SECONDS = 60

_SASL_HEADER = b"AMQP\x03\x01\x00\x00"
_AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
_SASL_FRAME = b"\x01"
_SETTLED = 1  # snd-settle-mode settled: what a receive-and-delete receiver asks for
_HEADER, _DELIVERY_ANNOTATIONS, _MESSAGE_ANNOTATIONS = 0x70, 0x71, 0x72
_BATCH_FORMAT = 0x80013700
_PERFORMATIVES = {
    0x10: "open",
    0x11: "begin",
    0x12: "attach",
    0x13: "flow",
    0x14: "transfer",
    0x15: "disposition",
    0x16: "detach",
    0x17: "end",
    0x18: "close",
}


@dataclass
class ReceivedMessage:
    """One message as the namespace stored it, decoded from the wire."""

    queue: str
    message_id: str
    body: bytes
    application_properties: dict[str, Any]
    content_type: str | None
    scheduled_enqueue_time: int | None  # milliseconds since the epoch, as AMQP carries it


@dataclass
class StoredMessage:
    """A message on a queue: the bytes its sender encoded, and what the service keeps beside them."""

    message_id: str
    payload: bytes
    sequence_number: int
    enqueued_at: int  # milliseconds since the epoch
    #: Deliveries that ended without the message leaving the queue (abandoned, or lock released).
    delivery_count: int = 0
    dead_letter_reason: str | None = None


@dataclass
class _Link:
    name: str
    handle: int
    peer_handle: int
    address: str
    client_sends: bool
    channel: int = 0
    peek_lock: bool = False
    transfer_buffer: bytearray = field(default_factory=bytearray)
    delivery_id: int | None = None
    message_format: int = 0
    frames: int = 0
    delivered: int = 0  # our delivery-count on a link the client receives from
    credit_limit: int = 0  # the receiver's delivery-count plus the credit of its last flow

    @property
    def queue(self) -> str:
        return self.address.rsplit("/", 1)[-1]


class FakeServiceBus:
    """An in-process AMQP peer with the queues in ``queues``; start it with ``async with``."""

    def __init__(
        self,
        queues: set[str],
        *,
        max_message_size: int = 256 * 1024,
        ack_delay: float = 0.0,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        lock_duration: float = LOCK_SECONDS,
    ) -> None:
        self.queues = set(queues)
        self.max_message_size = max_message_size
        self.ack_delay = ack_delay
        self.max_delivery_count = max_delivery_count
        self.lock_duration = lock_duration
        #: Every message accepted, in arrival order (receiving does not remove them from here).
        self.messages: list[ReceivedMessage] = []
        #: Messages on each queue a receiver can take, in sequence-number order.
        self.waiting: dict[str, list[StoredMessage]] = {queue: [] for queue in queues}
        #: Messages a peek-lock receiver holds, by lock token: their queue, and when the lock expires.
        self.locked: dict[uuid.UUID, tuple[str, StoredMessage, float]] = {}
        #: Each queue's own dead-letter subqueue (``<queue>/$deadletterqueue``), in arrival order.
        self.dead_lettered: dict[str, list[StoredMessage]] = {queue: [] for queue in queues}
        self._sequence_numbers = itertools.count(1)
        #: Messages per accepted transfer, in arrival order: how the SDK batched them.
        self.transfers: list[list[str]] = []
        #: AMQP frames each transfer to a queue took (a message larger than a frame spans several).
        self.frames_per_transfer: list[int] = []
        #: The next transfer to a queue is rejected with this (condition, description).
        self.reject_next: tuple[bytes, str] | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def connection_string(self, key: str = KEY) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName={KEY_NAME};"
            f"SharedAccessKey={key};UseDevelopmentEmulator=true"
        )

    def active(self, queue: str) -> int:
        """Messages on ``queue``, locked ones included: what its runtime properties count as active."""
        return len(self.on_queue(queue))

    def dead_letter_count(self, queue: str) -> int:
        """Messages in ``queue``'s own dead-letter subqueue: its runtime ``DeadLetterMessageCount``."""
        return len(self.dead_lettered.get(queue, []))

    def on_queue(self, queue: str) -> list[StoredMessage]:
        """The messages ``queue`` holds, waiting or locked, in sequence-number order."""
        self.expire_locks()
        held = [m for q, m, _ in self.locked.values() if q == queue]
        return sorted([*self.waiting.get(queue, []), *held], key=lambda m: m.sequence_number)

    def ids(self, queue: str) -> list[str]:
        return [m.message_id for m in self.messages if m.queue == queue]

    def enqueue(self, queue: str, message_id: str, payload: bytes) -> None:
        stored = StoredMessage(message_id, payload, next(self._sequence_numbers), int(time.time() * 1000))
        self.waiting[queue].append(stored)

    def lock(self, queue: str) -> tuple[uuid.UUID, StoredMessage, float]:
        """Lock the first waiting message of ``queue`` for a peek-lock receiver; also when it expires."""
        token, stored = uuid.uuid4(), self.waiting[queue].pop(0)
        locked_until = time.time() + self.lock_duration
        self.locked[token] = (queue, stored, locked_until)
        return token, stored, locked_until

    def expire_locks(self) -> None:
        now = time.time()
        for token in [t for t, (_, _, until) in self.locked.items() if until <= now]:
            self.abandon(token)

    def complete(self, token: uuid.UUID) -> bool:
        self.expire_locks()
        return self.locked.pop(token, None) is not None

    def abandon(self, token: uuid.UUID) -> bool:
        """Put the message back in its place, one delivery more; past the limit it is dead-lettered."""
        if token not in self.locked:
            return False
        queue, stored, _ = self.locked.pop(token)
        stored.delivery_count += 1
        if stored.delivery_count >= self.max_delivery_count:
            stored.dead_letter_reason = "MaxDeliveryCountExceeded"
            self.dead_lettered[queue].append(stored)
            return True
        waiting = self.waiting[queue]
        place = next((i for i, m in enumerate(waiting) if m.sequence_number > stored.sequence_number), None)
        waiting.insert(len(waiting) if place is None else place, stored)
        return True

    def dead_letter(self, token: uuid.UUID, reason: str | None) -> bool:
        self.expire_locks()
        if token not in self.locked:
            return False
        queue, stored, _ = self.locked.pop(token)
        stored.dead_letter_reason = reason
        self.dead_lettered[queue].append(stored)
        return True

    async def __aenter__(self) -> FakeServiceBus:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection = _Connection(self, reader, writer)
        try:
            await connection.run()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away, as clients do
        except asyncio.CancelledError:
            pass  # the namespace is shutting down; end quietly rather than as a cancelled task
        finally:
            connection.unsettled.clear()  # its locks stay until they expire
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def token_is_valid(self, token: str, audience: str) -> bool:
        if not token.startswith("SharedAccessSignature "):
            return False
        fields = {k: v[0] for k, v in parse_qs(token.removeprefix("SharedAccessSignature ")).items()}
        if (
            fields.get("skn") != KEY_NAME
            or fields.get("sr") != audience
            or int(fields.get("se", 0)) < time.time()
        ):
            return False
        signed = f"{quote_plus(fields['sr'])}\n{fields['se']}".encode()
        expected = base64.b64encode(hmac.new(KEY.encode(), signed, hashlib.sha256).digest()).decode()
        return hmac.compare_digest(expected, fields.get("sig", ""))


class _Connection:
    def __init__(
        self, bus: FakeServiceBus, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.bus = bus
        self.reader = reader
        self.writer = writer
        self.links: dict[int, _Link] = {}
        self.authorized: set[str] = set()
        self.next_handle = 0
        self.next_outgoing_id = 0
        self.next_delivery_id = 0
        #: Deliveries the client has not settled yet: delivery id -> (link, lock token).
        self.unsettled: dict[int, tuple[_Link, uuid.UUID]] = {}

    async def run(self) -> None:
        await self._negotiate_sasl()
        assert await self.reader.readexactly(8) == _AMQP_HEADER
        self.writer.write(_AMQP_HEADER)
        while True:
            channel, name, fields = await self._read_frame()
            if name is None:
                continue  # an empty frame keeps the connection alive
            await getattr(self, f"_on_{name}")(channel, fields)
            if name == "close":
                return

    async def _negotiate_sasl(self) -> None:
        assert await self.reader.readexactly(8) == _SASL_HEADER
        self.writer.write(_SASL_HEADER)
        self._send(0, frames.SASLMechanism(sasl_server_mechanisms=[b"ANONYMOUS", b"MSSBCBS"]), _SASL_FRAME)
        await self._read_frame()  # sasl-init: ANONYMOUS; the token comes over $cbs
        self._send(0, frames.SASLOutcome(code=0, additional_data=None), _SASL_FRAME)
        await self.writer.drain()

    async def _read_frame(self) -> tuple[int, str | None, list[Any]]:
        size = struct.unpack(">I", await self.reader.readexactly(4))[0]
        rest = await self.reader.readexactly(size - 4)
        offset, channel = rest[0] * 4 - 4, struct.unpack(">H", rest[2:4])[0]
        body = memoryview(rest[offset:])
        if not body:
            return channel, None, []
        code, fields = decode_frame(body)
        return channel, _PERFORMATIVES.get(code, "sasl"), fields

    def _send(self, channel: int, frame: Any, frame_type: bytes = b"\x00") -> None:
        header, body = encode_frame(frame, frame_type=frame_type)
        self.writer.write(header + struct.pack(">H", channel) + (body or b""))

    async def _on_sasl(self, channel: int, fields: list[Any]) -> None:
        raise AssertionError("SASL frame after negotiation")

    async def _on_open(self, channel: int, fields: list[Any]) -> None:
        self._send(
            0,
            frames.OpenFrame(
                container_id="fake-servicebus",
                hostname=None,
                max_frame_size=65536,
                channel_max=4999,
                idle_timeout=None,
                outgoing_locales=None,
                incoming_locales=None,
                offered_capabilities=None,
                desired_capabilities=None,
                properties=None,
            ),
        )

    async def _on_begin(self, channel: int, fields: list[Any]) -> None:
        self._send(
            channel,
            frames.BeginFrame(
                remote_channel=channel,
                next_outgoing_id=0,
                incoming_window=5000,
                outgoing_window=5000,
                handle_max=255,
                offered_capabilities=None,
                desired_capabilities=None,
                properties=None,
            ),
        )

    async def _on_attach(self, channel: int, fields: list[Any]) -> None:
        name, peer_handle, client_receives = fields[0].decode(), fields[1], fields[2]
        source, target = fields[5], fields[6]
        address = (source[0] if client_receives else target[0]).decode()
        link = _Link(
            name,
            self.next_handle,
            peer_handle,
            address,
            client_sends=not client_receives,
            channel=channel,
            peek_lock=bool(client_receives) and fields[3] != _SETTLED,
        )
        self.next_handle += 1
        self.links[peer_handle] = link
        entity = address.rsplit("/", 1)[-1]
        refusal: AMQPError | None = None
        if entity != "$cbs" and entity not in self.bus.queues:
            refusal = AMQPError(
                condition=b"amqp:not-found",
                description=f"The messaging entity '{address}' could not be found.",
            )
        elif entity != "$cbs" and not ({"", entity} & self.authorized):
            refusal = AMQPError(
                condition=b"amqp:unauthorized-access",
                description=f"Unauthorized access. 'Send' claim(s) are required for '{entity}'.",
            )
        self._send(
            channel,
            frames.AttachFrame(
                name=name,
                handle=link.handle,
                role=not client_receives,
                send_settle_mode=fields[3],
                rcv_settle_mode=fields[4],
                source=Source(*source) if source and not refusal else None,
                target=Target(*target) if target and not refusal else None,
                unsettled=None,
                incomplete_unsettled=None,
                initial_delivery_count=0 if client_receives else None,
                max_message_size=self.bus.max_message_size,
                offered_capabilities=None,
                desired_capabilities=None,
                properties={b"com.microsoft:max-message-batch-size": self.bus.max_message_size},
            ),
        )
        if refusal is not None:
            self._send(channel, frames.DetachFrame(handle=link.handle, closed=True, error=refusal))
            del self.links[peer_handle]
        elif link.client_sends:
            self._send(
                channel,
                frames.FlowFrame(
                    next_incoming_id=0,
                    incoming_window=5000,
                    next_outgoing_id=self.next_outgoing_id,
                    outgoing_window=5000,
                    handle=link.handle,
                    delivery_count=0,
                    link_credit=1000,
                    available=None,
                    drain=None,
                    echo=None,
                    properties=None,
                ),
            )

    async def _on_flow(self, channel: int, fields: list[Any]) -> None:
        link = self.links.get(fields[4]) if fields[4] is not None else None
        if link is None or link.client_sends or link.address.endswith("$cbs"):
            return  # session-level flow, or credit for $cbs replies, of which the double never runs out
        # Credit left to us: the receiver's delivery-count plus its credit, less what we delivered.
        link.credit_limit = (fields[5] or 0) + (fields[6] or 0)
        self._deliver(link)

    def _deliver(self, link: _Link) -> None:
        self.bus.expire_locks()
        waiting = self.bus.waiting[link.queue]
        while link.delivered < link.credit_limit and waiting:
            if link.peek_lock:
                # The message stays on the queue, locked; the delivery tag is its lock token.
                token, stored, locked_until = self.bus.lock(link.queue)
                self.unsettled[self.next_delivery_id] = (link, token)
                payload = _as_delivered(stored, int(locked_until * 1000))
                self._transfer(link.channel, link, payload, tag=token.bytes_le, settled=False)
            else:
                # Receive-and-delete: the delivery goes out settled and leaves the queue at once.
                stored = waiting.pop(0)
                self._transfer(link.channel, link, _as_delivered(stored, None), tag=uuid.uuid4().bytes_le)
            link.delivered += 1

    async def _on_disposition(self, channel: int, fields: list[Any]) -> None:
        role, first, last, settled, state = fields[0], fields[1], fields[2], fields[3], fields[4]
        if not role:
            return  # not a receiver settling what we delivered
        outcome = next(iter(state)) if isinstance(state, dict) and state else "accepted"
        released_on: set[int] = set()
        for delivery_id in range(first, (first if last is None else last) + 1):
            link, token = self.unsettled.pop(delivery_id, (None, None))
            if token is None:
                applied: Any = _lock_lost()
            elif outcome == "accepted":
                applied = Accepted() if self.bus.complete(token) else _lock_lost()
            elif outcome == "rejected":
                dead = self.bus.dead_letter(token, _reason(state))
                applied = Rejected(error=None) if dead else _lock_lost()
            else:  # modified or released: abandon
                applied = (
                    Modified(delivery_failed=True, undeliverable_here=None, message_annotations=None)
                    if outcome == "modified"
                    else Released()
                )
                if not self.bus.abandon(token):
                    applied = _lock_lost()
                elif link is not None:
                    released_on.add(link.peer_handle)
            if token is None and settled:
                continue  # a $cbs reply, or a delivery this connection never locked: nothing to answer
            if not settled:
                # rcv-settle-mode second: the receiver waits for the outcome applied, settled.
                self._send(
                    channel,
                    frames.DispositionFrame(
                        role=False, first=delivery_id, last=None, settled=True, state=applied, batchable=None
                    ),
                )
        for peer_handle in released_on:
            # A message back on the queue goes to a receiver with credit left, as the service does.
            if peer_handle in self.links:
                self._deliver(self.links[peer_handle])

    async def _on_transfer(self, channel: int, fields: list[Any]) -> None:
        link = self.links[fields[0]]
        if fields[1] is not None:  # the first frame of a delivery carries its id and format
            link.delivery_id, link.message_format = fields[1], fields[3]
        link.transfer_buffer += bytes(fields[-1])
        link.frames += 1
        if fields[5]:  # more: the message continues in the next frame
            return
        payload, link.transfer_buffer = bytes(link.transfer_buffer), bytearray()
        frame_count, link.frames = link.frames, 0
        message = decode_payload(memoryview(payload))
        if link.address.endswith("$cbs"):
            self._put_token(channel, message)
            outcome: Any = Accepted()
        else:
            outcome = await self._store(link, message, payload)
            self.bus.frames_per_transfer.append(frame_count)
        self._send(
            channel,
            frames.DispositionFrame(
                role=True, first=link.delivery_id, last=None, settled=True, state=outcome, batchable=None
            ),
        )

    def _put_token(self, channel: int, request: Message) -> None:
        properties = request.application_properties or {}
        audience = properties[b"name"].decode()
        token = request.value.decode() if isinstance(request.value, bytes) else str(request.value)
        if self.bus.token_is_valid(token, audience):
            # A token for the namespace ("sb://host") covers every entity; one for "sb://host/q" only q.
            self.authorized.add(urlparse(audience).path.strip("/"))
            status, description = 202, "Accepted"
        else:
            status, description = 401, "InvalidSignature: The token has an invalid signature."
        reply_link = next(
            link for link in self.links.values() if not link.client_sends and link.address.endswith("$cbs")
        )
        assert request.properties is not None
        reply = Message(
            properties=Properties(correlation_id=cast(str, request.properties.message_id)),
            application_properties={b"status-code": status, b"status-description": description},
        )
        body = bytearray()
        encode_payload(body, reply)
        self._transfer(channel, reply_link, bytes(body), tag=struct.pack(">I", self.next_delivery_id))

    def _transfer(
        self, channel: int, link: _Link, payload: bytes, *, tag: bytes, settled: bool = True
    ) -> None:
        self._send(
            channel,
            frames.TransferFrame(
                handle=link.handle,
                delivery_id=self.next_delivery_id,
                delivery_tag=tag,
                message_format=0,
                settled=settled,
                more=False,
                payload=payload,
            ),
        )
        self.next_delivery_id += 1
        self.next_outgoing_id += 1

    async def _store(self, link: _Link, message: Message, payload: bytes) -> Any:
        size = len(payload)
        if self.bus.ack_delay:
            await asyncio.sleep(self.bus.ack_delay)
        if size > self.bus.max_message_size:
            return Rejected(
                error=AMQPError(
                    condition=b"amqp:link:message-size-exceeded",
                    description=f"The message size {size} exceeds the limit.",
                )
            )
        if self.bus.reject_next is not None:
            (condition, description), self.bus.reject_next = self.bus.reject_next, None
            return Rejected(error=AMQPError(condition=condition, description=description))
        queue = link.address.rsplit("/", 1)[-1]
        batch = link.message_format == _BATCH_FORMAT
        inner = (
            [decode_payload(memoryview(d)) for d in cast(list[bytes], message.data)] if batch else [message]
        )
        if len(inner) > MAX_BATCH_COUNT:
            # The service's answer to too many messages in one batch is this unhelpful one.
            return Rejected(
                error=AMQPError(
                    condition=b"amqp:internal-error",
                    description="The service was unable to process the request; please retry the operation.",
                )
            )
        encoded = cast(list[bytes], message.data) if batch else [payload]
        for m, raw in zip(inner, encoded, strict=True):
            received = _received(queue, m)
            self.bus.messages.append(received)
            self.bus.enqueue(queue, received.message_id, bytes(raw))
        self.bus.transfers.append([_received(queue, m).message_id for m in inner])
        return Accepted()

    async def _on_detach(self, channel: int, fields: list[Any]) -> None:
        link = self.links.pop(fields[0], None)
        if link is not None:
            # Its locks stay until they expire; only this link could have settled them.
            for delivery_id in [d for d, (held_by, _) in self.unsettled.items() if held_by is link]:
                del self.unsettled[delivery_id]
            self._send(channel, frames.DetachFrame(handle=link.handle, closed=True, error=None))

    async def _on_end(self, channel: int, fields: list[Any]) -> None:
        self._send(channel, frames.EndFrame(error=None))

    async def _on_close(self, channel: int, fields: list[Any]) -> None:
        self._send(0, frames.CloseFrame(error=None))
        await self.writer.drain()


def _received(queue: str, message: Message) -> ReceivedMessage:
    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    annotations = message.message_annotations or {}
    data = cast(list[bytes], message.data if isinstance(message.data, list) else [message.data or b""])
    properties = message.properties or Properties()
    return ReceivedMessage(
        queue=queue,
        message_id=text(properties.message_id),
        body=b"".join(data),
        application_properties={text(k): text(v) for k, v in (message.application_properties or {}).items()},
        content_type=text(properties.content_type),
        scheduled_enqueue_time=annotations.get(b"x-opt-scheduled-enqueue-time"),
    )


def _as_delivered(stored: StoredMessage, locked_until: int | None) -> bytes:
    """The message as the service delivers it: the sender's sections, behind a header carrying the
    delivery count and the service's own annotations (the sender's annotations kept)."""
    annotations: dict[str | bytes, Any] = {}
    kept = []
    rest = memoryview(stored.payload)
    while rest:
        # Each section is a described value: 0x00, 0x53 (smallulong), its descriptor code, the value.
        after, _ = _DECODE_BY_CONSTRUCTOR[rest[3]](rest[4:])
        code, section, rest = rest[2], bytes(rest[: len(rest) - len(after)]), after
        if code == _MESSAGE_ANNOTATIONS:
            for key, value in (decode_payload(memoryview(section)).message_annotations or {}).items():
                annotations[key] = _typed(key, value)
        elif code not in (_HEADER, _DELIVERY_ANNOTATIONS):
            kept.append(section)
    annotations[b"x-opt-sequence-number"] = _long(stored.sequence_number)
    annotations[b"x-opt-enqueued-time"] = _timestamp(stored.enqueued_at)
    if locked_until is not None:
        annotations[b"x-opt-locked-until"] = _timestamp(locked_until)
    head = bytearray()
    encode_payload(
        head, Message(header=Header(delivery_count=stored.delivery_count), message_annotations=annotations)
    )
    return bytes(head) + b"".join(kept)


def _long(value: int) -> dict[str, Any]:
    return {TYPE: AMQPTypes.long, VALUE: value}


def _timestamp(milliseconds: int) -> dict[str, Any]:
    return {TYPE: AMQPTypes.timestamp, VALUE: milliseconds}


def _typed(key: str | bytes, value: Any) -> Any:
    """A decoded annotation typed again for encoding: the codec reads timestamps back as plain ints."""
    if not isinstance(value, int) or isinstance(value, bool):
        return value
    name = key.decode() if isinstance(key, bytes) else key
    return _timestamp(value) if name.endswith(("-time", "-until")) else _long(value)


def _lock_lost() -> Rejected:
    return Rejected(
        error=AMQPError(
            condition=b"com.microsoft:message-lock-lost",
            description=(
                "The lock supplied is invalid. Either the lock expired, or the message has already"
                " been removed from the queue."
            ),
        )
    )


def _reason(state: dict[str, Any]) -> str | None:
    """``DeadLetterReason`` from a ``rejected`` outcome's error info, where the SDK puts it."""
    try:
        info = state["rejected"][0][2] or {}
    except (IndexError, KeyError, TypeError):
        return None
    reason = info.get(b"DeadLetterReason")
    return reason.decode() if isinstance(reason, bytes) else reason
