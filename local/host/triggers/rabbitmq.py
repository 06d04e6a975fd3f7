"""``rabbitMQTrigger``: consume a queue and invoke the function per message, as the RabbitMQ extension.

The extension's rule, kept here: ``basic.qos(prefetchCount)`` (``extensions.rabbitMQ.prefetchCount``,
default 30), manual acks, deliveries handled concurrently as they arrive. Success acks. Failure
reads ``x-ms-rabbitmq-requeuecount``, adds one, and at 5 rejects without requeue (the queue's
dead-letter exchange takes the message); below 5 it republishes a copy with the new count to the
default exchange and only then acks the original, so a fixed number of tries is possible.

Like the extension (2.x), the listener declares nothing: it checks passively that the queue exists
(``RabbitMQService``: ``QueueDeclarePassive``, "Throws exception if queue doesn't exist") and a
missing queue fails the function's indexing with the client's message; the function is disabled
and not retried. Whoever owns the queue declares it, with its dead-letter exchange, before the
host starts (for this project, ``python -m local services up``).

Beyond the extension: republished copies wait for the publisher confirm before the original is
acked, a broker that cannot be reached at start is retried in the background (see
:mod:`local.host.triggers.retrying`), and a lost connection is re-established with capped,
jittered exponential backoff, until the queue can be consumed again. A message is acked only after
its invocation finished; one whose channel died meanwhile is redelivered by the broker (at least
once).

The extension acks each message on its own (``BasicAck(deliveryTag, false)``); here the acks of
successful invocations are coalesced (:mod:`local.host.triggers.rabbitmq_acks`): once per loop
turn, the finished prefix of the channel's deliveries is acked with one ``multiple=True`` ack, and
finished messages behind one still running are acked one by one. Nothing an app can observe
changes: a message is still acked only after its invocation finished, never with one that failed
or was left for redelivery, and a lost channel still redelivers what it had not acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import DeliveredMessage

from local.host.errors import FunctionFailedError, HostError, IndexingError, ListenerUnavailableError
from local.host.indexing import IndexedFunction
from local.host.invoker import Invoker
from local.host.triggers import ListenerContext
from local.host.triggers.rabbitmq_acks import AckTracker
from local.host.triggers.rabbitmq_options import RabbitMQTriggerOptions
from shared.platform.backoff import backoff_delay

log = logging.getLogger(__name__)

REQUEUE_COUNT_HEADER = "x-ms-rabbitmq-requeuecount"
#: The extension's fixed limit: the 5th failure dead-letters the message.
MAX_REQUEUE_COUNT = 5
DEFAULT_SHUTDOWN_GRACE = 10.0
CONNECT_TIMEOUT = 10.0
#: What the broker answers to a wrong user, password or vhost: a configuration no retry fixes.
_REFUSED = (
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.ConnectionNotAllowed,
    aiormq.exceptions.ChannelAccessRefused,
)


def next_requeue_count(headers: Mapping[str, Any]) -> int:
    """The requeue count after one more failure; a missing or unreadable header counts as 0."""
    raw = headers.get(REQUEUE_COUNT_HEADER)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("ascii", "replace")
    try:
        return int(raw) + 1 if raw is not None else 1
    except (TypeError, ValueError):
        return 1


def queue_not_found(exc: aiormq.exceptions.ChannelNotFoundEntity) -> str:
    """The RabbitMQ .NET client's message for a passive declaration of a missing queue."""
    reply = exc.args[0] if exc.args else "NOT_FOUND"
    return (
        "The AMQP operation was interrupted: AMQP close-reason, initiated by Peer, code=404,"
        f" text='{reply}', classId=50, methodId=10"
    )


def _tag(message: DeliveredMessage) -> int:
    tag = message.delivery_tag
    assert tag is not None, "a consumed delivery always has a delivery tag"
    return tag


def _message_id(message: DeliveredMessage) -> str:
    return message.header.properties.message_id or ""


def _header_text(headers: Mapping[str, Any], name: str) -> str:
    # The .NET client writes traceparent as a byte array; other publishers write a string.
    value = headers.get(name)
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class _Session:
    """One connection's worth of consuming; replaced as a whole when the connection is lost."""

    connection: AbstractConnection
    channel: AbstractChannel
    underlay: aiormq.abc.AbstractChannel
    consumer_tag: str
    consumer_cancelled: asyncio.Event


class RabbitMQListener:
    """Runs one ``rabbitMQTrigger`` function; see the module docstring for the delivery rules."""

    def __init__(
        self,
        fn: IndexedFunction,
        ctx: ListenerContext,
        *,
        shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
        reconnect_base: float = 0.5,
        reconnect_cap: float = 30.0,
    ) -> None:
        self.function = fn
        self.options = RabbitMQTriggerOptions.from_function(fn, ctx)
        self.queue_name = self.options.queue_name
        self._invoker: Invoker = ctx.invoker
        self._grace = shutdown_grace
        self._reconnect_base = reconnect_base
        self._reconnect_cap = reconnect_cap
        self._session: _Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    def describe(self) -> str:
        """``rabbitMQTrigger (queue <name>)``."""
        return f"rabbitMQTrigger (queue {self.queue_name})"

    async def start(self) -> None:
        """Check that the queue exists and start consuming.

        A missing queue is an :class:`IndexingError` with the RabbitMQ client's message; refused
        credentials or access are a :class:`HostError`; a broker that cannot be reached (yet) is a
        :class:`ListenerUnavailableError`, which the host retries.
        """
        try:
            self._session = await self._open_session()
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise IndexingError(self.function.name, queue_not_found(exc)) from exc
        except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
            reason = (
                f"Function '{self.function.name}': cannot consume RabbitMQ queue '{self.queue_name}'"
                f" at {self.options.safe_url}: {type(exc).__name__}: {exc}"
            )
            if isinstance(exc, _REFUSED):
                raise HostError(reason) from exc
            raise ListenerUnavailableError(reason) from exc
        self._supervisor = asyncio.create_task(self._supervise(), name=f"rabbitmq:{self.queue_name}")
        log.info(
            "Listening on RabbitMQ queue %s for %s (prefetch %d)",
            self.queue_name,
            self.function.name,
            self.options.prefetch_count,
        )

    async def stop(self) -> None:
        """Cancel the consumer, let in-flight invocations finish within the grace period, close.

        What has not finished by then is never acked: closing the channel returns it to the queue.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.underlay.basic_cancel(session.consumer_tag, timeout=CONNECT_TIMEOUT)
        pending = set(self._inflight)
        if pending:
            log.info(
                "Waiting up to %gs for %d in-flight messages of %s",
                self._grace,
                len(pending),
                self.queue_name,
            )
            _, pending = await asyncio.wait(pending, timeout=self._grace)
        if session is not None:
            await _close_quietly(session.connection)
        if pending:
            log.warning(
                "%d messages of %s did not finish within %gs; returned to the queue unacknowledged",
                len(pending),
                self.queue_name,
                self._grace,
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        log.info("Stopped listening on RabbitMQ queue %s", self.queue_name)

    async def _open_session(self) -> _Session:
        connection = await aio_pika.connect(
            self.options.url,
            timeout=CONNECT_TIMEOUT,
            client_properties={"connection_name": f"tasklane-local {self.function.name}"},
        )
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(self.queue_name, passive=True)
            await channel.set_qos(prefetch_count=self.options.prefetch_count)
            cancelled = asyncio.Event()
            underlay = await channel.get_underlay_channel()
            underlay.on_consumer_cancel_callbacks.add(lambda _frame: cancelled.set())
            # Consume on the AMQP channel itself: aio-pika would wrap every delivery in an
            # IncomingMessage, which costs more than the delivery on a busy queue. Delivery tags
            # belong to the channel, and so does the tracker that acks them.
            on_message = partial(self._on_message, AckTracker(underlay))
            consume_ok = await underlay.basic_consume(self.queue_name, on_message, no_ack=False)
            tag = consume_ok.consumer_tag
        except BaseException:
            await _close_quietly(connection)
            raise
        assert tag is not None
        return _Session(connection, channel, underlay, tag, cancelled)

    async def _supervise(self) -> None:
        """Wait for the session to end (connection, channel or consumer lost) and replace it."""
        while True:
            session = self._session
            assert session is not None
            ended = [
                asyncio.ensure_future(session.connection.closed()),
                asyncio.ensure_future(session.channel.closed()),
                asyncio.ensure_future(session.consumer_cancelled.wait()),
            ]
            try:
                await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in ended:
                    waiter.cancel()
            log.warning("Lost the RabbitMQ consumer of queue %s; reconnecting", self.queue_name)
            self._session = None
            await _close_quietly(session.connection)
            self._session = await self._reconnect()
            log.info("Reconnected to RabbitMQ; consuming queue %s again", self.queue_name)

    async def _reconnect(self) -> _Session:
        attempt = 0
        while True:
            delay = backoff_delay(
                attempt + 1, random.random(), base=self._reconnect_base, cap=self._reconnect_cap
            )
            await asyncio.sleep(delay)
            try:
                return await self._open_session()
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
                attempt += 1
                log.warning(
                    "Reconnect %d to RabbitMQ for queue %s failed after %.1fs wait: %s: %s",
                    attempt,
                    self.queue_name,
                    delay,
                    type(exc).__name__,
                    exc,
                )

    async def _on_message(self, acks: AckTracker, message: DeliveredMessage) -> None:
        # aiormq runs this callback in a task it cancels when the channel closes; the invocation
        # gets a task of its own so a lost connection never interrupts a running function.
        acks.delivered(_tag(message))
        if self._stopping:
            log.debug(
                "Message %s (delivery tag %s) left for redelivery: stopping",
                _message_id(message),
                message.delivery_tag,
            )
            return
        task = asyncio.create_task(self._process(message, acks), name=f"rabbitmq:{message.delivery_tag}")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _process(self, message: DeliveredMessage, acks: AckTracker) -> None:
        headers: Mapping[str, Any] = message.header.properties.headers or {}
        invocation_id = str(uuid.uuid4())
        log.debug(
            "Message %s (delivery tag %s) from queue %s: invocation %s",
            _message_id(message),
            message.delivery_tag,
            self.queue_name,
            invocation_id,
        )
        body = message.body if self.options.as_bytes else message.body.decode("utf-8", "replace")
        try:
            await self._invoker.invoke(
                self.function,
                {self.function.trigger.name: body},
                trace_parent=_header_text(headers, "traceparent"),
                trace_state=_header_text(headers, "tracestate"),
                invocation_id=invocation_id,
            )
            succeeded = True
        except Exception as exc:
            if not isinstance(exc, FunctionFailedError):
                log.exception(
                    "Invocation %s of message %s failed in the host", invocation_id, _message_id(message)
                )
            succeeded = False
        try:
            if succeeded:
                await acks.succeeded(_tag(message))
                log.debug("Acked message %s (delivery tag %s)", _message_id(message), message.delivery_tag)
            else:
                await self._retry_or_dead_letter(message, headers)
                acks.settled(_tag(message))
        except Exception as exc:
            # The original was not acked, so the broker redelivers it once its channel is gone (a
            # retry copy published just before may then run too: at least once, never lost). It
            # stays tracked: a later multiple ack on a channel still open must not cover it.
            log.warning(
                "Message %s (delivery tag %s) of queue %s not settled, the broker redelivers it: %r",
                _message_id(message),
                message.delivery_tag,
                self.queue_name,
                exc,
            )

    async def _retry_or_dead_letter(self, message: DeliveredMessage, headers: Mapping[str, Any]) -> None:
        count = next_requeue_count(headers)
        if count >= MAX_REQUEUE_COUNT:
            await message.channel.basic_reject(_tag(message), requeue=False)
            log.warning(
                "Message %s (delivery tag %s) failed %d times: rejected to the dead-letter exchange of %s",
                _message_id(message),
                message.delivery_tag,
                count,
                self.queue_name,
            )
            return
        # Reject with requeue would retry forever; a copy carries the count (the extension's way).
        properties = message.header.properties
        properties.headers = {**headers, REQUEUE_COUNT_HEADER: count}
        confirmation = await message.channel.basic_publish(
            message.body, exchange="", routing_key=self.queue_name, properties=properties
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise HostError(f"the broker did not confirm the retry copy ({confirmation!r})")
        await message.channel.basic_ack(_tag(message))
        log.info(
            "Message %s (delivery tag %s) failed; requeued as try %d of %d",
            _message_id(message),
            message.delivery_tag,
            count + 1,
            MAX_REQUEUE_COUNT,
        )


async def _close_quietly(connection: AbstractConnection) -> None:
    # The connection may already be half gone; closing it is only to release what is left.
    with contextlib.suppress(Exception):
        await connection.close()
