"""RabbitMQ broker (local profile): durable queue, dead-letter exchange, publisher confirms.

The topology (``shared.platform.rabbitmq_topology``) is the one the host's ``rabbitMQTrigger``
declares, so whichever side starts first creates it and the other finds it as expected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared.brokers.base import Backlog, Broker, OutgoingMessage
from shared.errors import BrokerError
from shared.platform.rabbitmq_topology import (
    QueueTopology,
    declare_queue_topology,
    declare_wait_queue,
    wait_queue,
    wait_tier,
)
from shared.secrets import Secret

log = logging.getLogger(__name__)


#: Seconds a connect or a publish (until the broker's confirm) may take before it is a BrokerError:
#: a stalled broker answers 503s within seconds instead of holding every request.
PUBLISH_TIMEOUT = 5.0
#: What aio-pika and aiormq raise while a connection is down, closing or reconnecting: refused and
#: reset sockets, AMQP errors, and RuntimeErrors such as "connection closed" or an invalid channel
#: state. All of them mean the broker cannot take the message now (a 503, not a 500).
_CLIENT_ERRORS = (TimeoutError, OSError, RuntimeError, aiormq.exceptions.AMQPError)
#: A message due in less than this goes straight to the work queue.
MIN_WAIT = 0.5


class RabbitMQBroker(Broker):
    """Publishes persistent messages with confirms over one robust connection, opened on first use."""

    system = "rabbitmq"

    def __init__(self, url: Secret, queue: str, *, timeout: float = PUBLISH_TIMEOUT) -> None:
        self.queue = queue
        self._topology = QueueTopology.for_queue(queue)
        self._url = url
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        #: Wait tiers declared on this connection (each declared once, on first use).
        self._wait_tiers: set[int] = set()

    async def _publisher(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._lock:
            if self._channel is None or self._channel.is_closed:
                try:
                    if self._connection is None or self._connection.is_closed:
                        self._connection = await aio_pika.connect_robust(
                            self._url.reveal(), timeout=self._timeout
                        )
                    channel = await self._connection.channel(publisher_confirms=True)
                    await declare_queue_topology(channel, self.queue)
                except _CLIENT_ERRORS as exc:
                    raise BrokerError(f"RabbitMQ is not reachable for queue '{self.queue}': {exc}") from exc
                self._channel = channel
                self._wait_tiers = set()
        return self._channel

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send each message to the work queue, or, when it is scheduled later, to the wait queue of
        its tier (:mod:`shared.platform.rabbitmq_topology`), from which it comes back when due."""
        now = time.time()
        routes: dict[str, list[OutgoingMessage]] = {}
        for message in messages:
            wait = message.scheduled_at.timestamp() - now if message.scheduled_at else 0.0
            route = self.queue if wait < MIN_WAIT else await self._wait_queue(wait_tier(wait))
            routes.setdefault(route, []).append(message)
        for route, routed in routes.items():
            await self._publish(route, routed)

    async def dead_letter(self, messages: Sequence[OutgoingMessage]) -> None:
        # Straight to the dead-letter queue through the default exchange, as the broker's own
        # dead-lettering (through the DLX) would put it.
        await self._publish(self._topology.dead_letter_queue, messages)

    async def _wait_queue(self, tier: int) -> str:
        name = wait_queue(self.queue, tier)
        if tier in self._wait_tiers:
            return name
        channel = await self._publisher()
        try:
            await declare_wait_queue(channel, self.queue, tier)
        except _CLIENT_ERRORS as exc:
            raise BrokerError(f"RabbitMQ refused the wait queue '{name}': {exc}") from exc
        self._wait_tiers.add(tier)
        return name

    async def _publish(self, routing_key: str, messages: Sequence[OutgoingMessage]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._publish_confirmed(routing_key, messages)
        except TimeoutError:
            raise BrokerError(
                f"RabbitMQ did not confirm {len(messages)} messages to '{routing_key}' within"
                f" {self._timeout:g}s"
            ) from None

    async def _publish_confirmed(self, routing_key: str, messages: Sequence[OutgoingMessage]) -> None:
        channel = await self._publisher()
        try:
            # aio-pika builds a Message object per publish; on the accept path that costs more
            # than the publish itself, so publish on the AMQP channel underneath. aiormq raises
            # for a nack (DeliveryError) and for an unroutable message (PublishError).
            underlay = await channel.get_underlay_channel()
        except _CLIENT_ERRORS as exc:
            raise BrokerError(f"RabbitMQ channel for '{self.queue}' is not open: {exc}") from exc
        publishes = [
            underlay.basic_publish(
                m.body,
                routing_key=routing_key,
                properties=aiormq.spec.Basic.Properties(
                    message_id=m.id,
                    headers=dict(m.headers) if m.headers else None,
                    content_type=m.content_type,
                    delivery_mode=2,  # persistent
                ),
                mandatory=True,
            )
            for m in messages
        ]
        # Every publish waits for its own confirm; together they share the round trips.
        results = await asyncio.gather(*publishes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BrokerError(
                f"RabbitMQ did not confirm {len(failures)} of {len(messages)} messages to '{routing_key}':"
                f" {failures[0]!r}"
            ) from failures[0]

    async def backlog(self) -> Backlog:
        await self._publisher()  # connects and declares the topology
        assert self._connection is not None
        try:
            # A robust channel answers a repeated declare from its cache (message_count frozen at
            # the first answer), so ask the broker on a plain AMQP channel of its own, and close it:
            # a passive declare of a missing queue would close it anyway.
            async with self._connection.channel() as channel:
                underlay = await channel.get_underlay_channel()
                queue = await underlay.queue_declare(self.queue, passive=True)
                dead = await underlay.queue_declare(self._topology.dead_letter_queue, passive=True)
        except _CLIENT_ERRORS as exc:
            raise BrokerError(f"cannot read the backlog of '{self.queue}': {exc}") from exc
        active = queue.message_count or 0
        dead_lettered = dead.message_count or 0
        # RabbitMQ has no scheduled messages without a plugin.
        return Backlog(self.queue, active=active, dead_lettered=dead_lettered, scheduled=None)

    async def drain_dead_letters(self, decide: Callable[[OutgoingMessage], Awaitable[bool]]) -> None:
        """Take each dead letter in turn (``basic.get`` up to the count the queue had); acknowledge
        those ``decide`` takes, and hand the rest back when done (a closing channel requeues what it
        has not acknowledged, in their places)."""
        await self._publisher()
        assert self._connection is not None
        try:
            async with self._connection.channel() as channel:
                underlay = await channel.get_underlay_channel()
                queue = self._topology.dead_letter_queue
                waiting = (await underlay.queue_declare(queue, passive=True)).message_count or 0
                for _ in range(waiting):
                    got = await underlay.basic_get(queue, no_ack=False)
                    if got.delivery_tag is None:  # get-empty: someone else took the rest
                        break
                    properties = got.header.properties
                    letter = OutgoingMessage(
                        properties.message_id or "",
                        got.body,
                        {str(k): _text(v) for k, v in (properties.headers or {}).items()},
                    )
                    if await decide(letter):
                        await underlay.basic_ack(got.delivery_tag)
        except _CLIENT_ERRORS as exc:
            raise BrokerError(f"cannot read the dead letters of '{self.queue}': {exc}") from exc

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and not connection.is_closed:
            await connection.close()


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)
