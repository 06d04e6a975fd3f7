"""The host's ``rabbitMQTrigger`` against a real RabbitMQ: delivery, retries, dead-lettering, outages.

Each test uses its own uuid-named queue (other suites share the broker) and deletes only that. As
with the RabbitMQ extension, the listener declares nothing: each test declares its queue first,
as the app's owner does (``python -m local services up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import azure.functions as func
import pytest

from local.host.errors import IndexingError, SettingNotFoundError
from local.host.indexing import Binding, IndexedFunction, index
from local.host.invoker import Invoker
from local.host.settings import HostConfig
from local.host.triggers import ListenerContext
from local.host.triggers.rabbitmq import (
    REQUEUE_COUNT_HEADER,
    RabbitMQListener,
    next_requeue_count,
)
from local.host.triggers.rabbitmq_options import RabbitMQTriggerOptions
from local.services import rabbitmqctl
from shared.platform.rabbitmq_topology import QueueTopology, declare_queue_topology
from tests.waiting import until

SETTING = "RabbitMQConnection"


def trigger_function(handler: Callable[..., Any], queue: str, **binding: str) -> IndexedFunction:
    """An indexed function as the worker would index ``@generic_trigger(type="rabbitMQTrigger")``."""
    values = {"name": "message", "type": "rabbitMQTrigger", "direction": "IN", "queueName": queue}
    values |= {"connectionStringSetting": SETTING, **binding}
    trigger = Binding("message", "rabbitMQTrigger", "IN", values)
    return IndexedFunction("process", trigger, (trigger,), handler, Path("."))


def listener_context(url: str, *, prefetch: int = 30) -> ListenerContext:
    config = HostConfig({"extensions": {"rabbitMQ": {"prefetchCount": prefetch}}})
    return ListenerContext(Invoker(), config, {SETTING: url}, host_id="test")


class Broker:
    """The publishing and inspecting side of one test; a connection per call survives restarts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue = f"test-trigger-{uuid.uuid4().hex[:12]}"
        self.topology = QueueTopology.for_queue(self.queue)

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
        async with await aio_pika.connect(self.url) as connection:
            yield await connection.channel()

    async def publish(self, *bodies: bytes, **properties: Any) -> list[str]:
        ids = []
        async with self.channel() as channel:
            await declare_queue_topology(channel, self.queue)
            for body in bodies:
                message_id = uuid.uuid4().hex
                message = aio_pika.Message(
                    body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties
                )
                await channel.default_exchange.publish(message, routing_key=self.queue)
                ids.append(message_id)
        return ids

    async def depth(self) -> int:
        async with self.channel() as channel:
            declared = await channel.declare_queue(self.queue, passive=True)
        return int(declared.declaration_result.message_count or 0)

    async def take(
        self, queue: str, expected: int, within: float = 5.0
    ) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Remove up to ``expected`` messages from ``queue``, waiting for late requeues."""
        taken: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = time.monotonic() + within
        async with self.channel() as channel:
            source = await channel.declare_queue(queue, passive=True)
            while len(taken) < expected and time.monotonic() < deadline:
                message = await source.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    taken.append(message)
        return taken

    async def delete(self) -> None:
        async with self.channel() as channel:
            await channel.queue_delete(self.queue)
            await channel.queue_delete(self.topology.dead_letter_queue)
            await channel.exchange_delete(self.topology.dead_letter_exchange)


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[Broker]:
    broker = Broker(rabbitmq_url)
    yield broker
    await broker.delete()


StartListener = Callable[..., Awaitable[RabbitMQListener]]


@pytest.fixture
async def start_listener(broker: Broker) -> AsyncIterator[StartListener]:
    """Start listeners on the test's queue; stops whatever is still running at the end."""
    started: list[RabbitMQListener] = []

    async def start(
        handler: Callable[..., Any], *, prefetch: int = 30, declare: bool = True, **options: Any
    ) -> RabbitMQListener:
        if declare:
            async with broker.channel() as channel:
                await declare_queue_topology(channel, broker.queue)
        fn = trigger_function(handler, broker.queue)
        listener = RabbitMQListener(fn, listener_context(broker.url, prefetch=prefetch), **options)
        await listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        await listener.stop()


# --- delivery ------------------------------------------------------------------------------------


async def test_function_receives_the_body_as_str_and_the_message_is_acked(
    broker: Broker, start_listener: StartListener
) -> None:
    # Given a function whose trigger parameter is annotated ``str``
    received: list[Any] = []

    async def handler(message: str) -> None:
        received.append(message)

    listener = await start_listener(handler)
    # When a UTF-8 message arrives
    await broker.publish("héllo ✓".encode())
    await until(lambda: bool(received), 5, "the invocation")
    await listener.stop()
    # Then it was decoded, and acked: closing the channel returned nothing to the queue
    assert received == ["héllo ✓"]
    assert await broker.depth() == 0


async def test_bytes_annotation_gets_the_raw_body(broker: Broker, start_listener: StartListener) -> None:
    received: list[Any] = []

    def handler(message: bytes) -> None:  # sync: runs on the invoker's thread pool
        received.append(message)

    listener = await start_listener(handler)
    await broker.publish(b"\xff\x00raw")
    await until(lambda: bool(received), 5, "the invocation")
    await listener.stop()
    assert received == [b"\xff\x00raw"]
    assert await broker.depth() == 0


async def test_traceparent_header_reaches_the_context(broker: Broker, start_listener: StartListener) -> None:
    seen: list[tuple[str, str]] = []

    async def handler(message: str, context: func.Context) -> None:
        seen.append((context.trace_context.trace_parent, context.trace_context.trace_state))

    await start_listener(handler)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    # The .NET client writes traceparent as bytes; tracestate arrives as a string.
    await broker.publish(b"x", headers={"traceparent": bytearray(parent.encode()), "tracestate": "vendor=1"})
    await until(lambda: bool(seen), 5, "the invocation")
    assert seen == [(parent, "vendor=1")]


@pytest.fixture
def ack_frames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Every ``basic.ack`` the process writes during the test, as ``(delivery tag, multiple)``."""
    frames: list[tuple[int, bool]] = []
    basic_ack = aiormq.Channel.basic_ack

    async def recording(channel: aiormq.Channel, delivery_tag: int, multiple: bool = False) -> None:
        frames.append((delivery_tag, multiple))
        await basic_ack(channel, delivery_tag, multiple)

    monkeypatch.setattr(aiormq.Channel, "basic_ack", recording)
    return frames


async def test_acks_of_concurrent_invocations_are_coalesced(
    broker: Broker, start_listener: StartListener, ack_frames: list[tuple[int, bool]]
) -> None:
    # Given 300 messages waiting and a function that takes a moment for each
    bodies = [f"m{i}" for i in range(300)]
    await broker.publish(*(body.encode() for body in bodies))
    processed: list[str] = []

    async def handler(message: str) -> None:
        await asyncio.sleep(0.01)
        processed.append(message)

    # When the listener works through them, thirty at a time
    listener = await start_listener(handler, prefetch=30)
    await until(lambda: len(processed) == len(bodies), 15, "every message to be processed")
    await listener.stop()
    # Then each ran once and all are acked (closing the channel returned none), in fewer frames
    assert sorted(processed) == sorted(bodies)
    assert await broker.depth() == 0
    assert any(multiple for _, multiple in ack_frames)
    assert len(ack_frames) < len(bodies) / 2


async def test_coalesced_acks_never_cover_a_failing_message(
    broker: Broker,
    start_listener: StartListener,
    ack_frames: list[tuple[int, bool]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a function that fails the first try of every seventh message, among quick successes
    caplog.set_level(logging.WARNING, logger="local.host.triggers.rabbitmq")
    bodies = [f"m{i}" for i in range(210)]
    failing = set(bodies[::7])
    await broker.publish(*(body.encode() for body in bodies))
    tries: list[str] = []

    async def handler(message: str) -> None:
        tries.append(message)
        await asyncio.sleep(0.005)
        if message in failing and tries.count(message) == 1:
            raise RuntimeError("first try")

    # When the listener works through them
    listener = await start_listener(handler, prefetch=30)
    expected = sorted(bodies + sorted(failing))
    await until(lambda: len(tries) >= len(expected), 15, "every message and retry to run")
    await asyncio.sleep(0.2)
    await listener.stop()
    # Then every message ran once more per failure and no more: had a multiple ack covered a failing
    # delivery, its own ack would be a second one, the broker would close the channel and redeliver
    assert sorted(tries) == expected
    assert "not settled" not in caplog.text
    assert "Lost the RabbitMQ consumer" not in caplog.text
    assert any(multiple for _, multiple in ack_frames)
    assert await broker.depth() == 0
    assert await broker.take(broker.topology.dead_letter_queue, expected=1, within=0.2) == []


# --- failures ------------------------------------------------------------------------------------


async def test_failing_function_is_tried_five_times_then_dead_lettered(
    broker: Broker, start_listener: StartListener
) -> None:
    # Given a function that always fails
    tries: list[str] = []

    async def handler(message: str) -> None:
        tries.append(message)
        raise RuntimeError("always")

    await start_listener(handler)
    # When a message arrives
    [message_id] = await broker.publish(b"payload", headers={"x-custom": "kept"}, content_type="text/plain")
    # Then after exactly five tries it sits in the dead-letter queue, body and properties intact
    [dead] = await broker.take(broker.topology.dead_letter_queue, expected=1, within=10)
    assert len(tries) == 5
    assert tries == ["payload"] * 5
    assert dead.body == b"payload"
    assert dead.message_id == message_id
    assert dead.content_type == "text/plain"
    assert dead.headers["x-custom"] == "kept"
    assert dead.headers[REQUEUE_COUNT_HEADER] == 4
    await asyncio.sleep(0.2)
    assert len(tries) == 5
    assert await broker.depth() == 0


async def test_an_existing_queue_is_consumed_as_it_is(broker: Broker, start_listener: StartListener) -> None:
    # Given the queue exists with arguments of its own (no dead-letter exchange)
    async with broker.channel() as channel:
        await channel.declare_queue(broker.queue, durable=True)
    received: list[str] = []

    async def handler(message: str) -> None:
        received.append(message)

    # When the listener starts, it consumes the queue
    await start_listener(handler, declare=False)
    async with broker.channel() as channel:
        await channel.default_exchange.publish(aio_pika.Message(b"still consumed"), routing_key=broker.queue)
    await until(lambda: received == ["still consumed"], 5, "the invocation")
    # Then the queue was left as it was: declaring it without arguments is still accepted
    async with broker.channel() as channel:
        await channel.declare_queue(broker.queue, durable=True)


# --- outages and shutdown ------------------------------------------------------------------------


async def test_no_message_is_lost_across_a_broker_restart(
    broker: Broker, start_listener: StartListener, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 200 persistent messages and a function that takes a little while for each
    caplog.set_level(logging.INFO, logger="local.host.triggers.rabbitmq")
    ids = await broker.publish(*(f"m{i}".encode() for i in range(200)))
    processed: list[str] = []

    async def handler(message: str) -> None:
        await asyncio.sleep(0.1)
        processed.append(message)

    await start_listener(handler, prefetch=10, reconnect_base=0.2, reconnect_cap=1.0)
    await until(lambda: len(processed) >= 20, 10, "processing to start")
    # When the broker restarts mid-run (quickly, it is shared with other suites)
    try:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        processed_while_down = len(processed)
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
    # Then the listener reconnects and every message is processed at least once
    bodies = {f"m{i}" for i in range(len(ids))}
    await until(lambda: bodies <= set(processed), 20, "every message to be processed")
    assert processed_while_down < len(bodies), "the restart came after the queue had drained"
    assert "Reconnected to RabbitMQ" in caplog.text
    assert await broker.depth() == 0


@pytest.mark.parametrize(("work", "grace", "finished"), [(0.5, 5.0, 4), (30.0, 0.3, 0)])
async def test_stop_finishes_or_returns_in_flight_messages(
    broker: Broker, start_listener: StartListener, work: float, grace: float, finished: int
) -> None:
    # Given ten messages, four of them in flight (prefetch 4) in a slow function
    ids = await broker.publish(*(f"m{i}".encode() for i in range(10)))
    started: list[str] = []
    processed: list[str] = []

    async def handler(message: str) -> None:
        started.append(message)
        await asyncio.sleep(work)
        processed.append(message)

    listener = await start_listener(handler, prefetch=4, shutdown_grace=grace)
    await until(lambda: len(started) == 4, 5, "four messages in flight")
    # When the listener stops
    began = time.monotonic()
    await listener.stop()
    # Then in-flight work finished within the grace period or went back unacknowledged
    assert time.monotonic() - began < grace + 2
    assert len(processed) == finished
    remaining = await broker.take(broker.queue, expected=len(ids) - finished)
    returned = [m.body.decode() for m in remaining]
    assert sorted(processed + returned) == sorted(f"m{i}" for i in range(10))


async def test_consumer_comes_back_once_its_deleted_queue_is_declared_again(
    broker: Broker, start_listener: StartListener
) -> None:
    received: list[str] = []

    async def handler(message: str) -> None:
        received.append(message)

    # Given a listener whose queue is deleted under it
    await start_listener(handler, reconnect_base=0.1, reconnect_cap=0.5)
    async with broker.channel() as channel:
        await channel.queue_delete(broker.queue)
    # Then it does not declare the queue again itself
    await asyncio.sleep(0.5)
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await broker.depth()
    # When its owner declares it again (publish does), Then the listener consumes it again
    await broker.publish(b"after")
    await until(lambda: received == ["after"], 10, "the invocation")


# --- topology and options ------------------------------------------------------------------------


async def test_trigger_finds_the_topology_the_sender_declared(broker: Broker, rabbitmq_url: str) -> None:
    # Given the pipeline's sender declared the queue first (it does on its first send)
    from shared.brokers.rabbitmq import RabbitMQBroker
    from shared.secrets import Secret

    sender = RabbitMQBroker(Secret(rabbitmq_url), broker.queue)
    await sender.send_batch([])
    await sender.close()
    # When the trigger declares it again, Then it is accepted as is: same arguments, no conflict
    async with broker.channel() as channel:
        ours = await declare_queue_topology(channel, broker.queue)
    assert ours.arguments_applied


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 1),
        ({REQUEUE_COUNT_HEADER: 1}, 2),
        ({REQUEUE_COUNT_HEADER: 4}, 5),
        ({REQUEUE_COUNT_HEADER: "3"}, 4),
        ({REQUEUE_COUNT_HEADER: b"2"}, 3),
        ({REQUEUE_COUNT_HEADER: bytearray(b"2")}, 3),
        ({REQUEUE_COUNT_HEADER: "garbage"}, 1),
    ],
)
def test_next_requeue_count(headers: dict[str, Any], expected: int) -> None:
    assert next_requeue_count(headers) == expected


def test_options_follow_the_extension_resolution() -> None:
    def handler(message: str) -> None: ...

    fn = trigger_function(handler, "tasks")
    ctx = ListenerContext(Invoker(), HostConfig(), {SETTING: "amqp://u:secret@h:5672/"}, "t")
    options = RabbitMQTriggerOptions.from_function(fn, ctx)
    assert (options.queue_name, options.prefetch_count, options.as_bytes) == ("tasks", 30, False)
    assert "secret" not in options.safe_url
    # A connection string of that name wins over the app setting, as in GetConnectionStringOrSetting
    ctx.environ[f"ConnectionStrings:{SETTING}"] = "amqp://cs-host/"
    assert RabbitMQTriggerOptions.from_function(fn, ctx).url == "amqp://cs-host/"
    # dataType binary overrides the annotation
    fn_binary = trigger_function(handler, "tasks", dataType="binary")
    assert RabbitMQTriggerOptions.from_function(fn_binary, ctx).as_bytes


def test_missing_connection_setting_names_the_setting() -> None:
    def handler(message: str) -> None: ...

    ctx = ListenerContext(Invoker(), HostConfig(), {}, "t")
    with pytest.raises(SettingNotFoundError, match=SETTING):
        RabbitMQTriggerOptions.from_function(trigger_function(handler, "tasks"), ctx)
    fallback = HostConfig({"extensions": {"rabbitMQ": {"connectionString": "amqp://fallback/"}}})
    ctx = ListenerContext(Invoker(), fallback, {}, "t")
    assert (
        RabbitMQTriggerOptions.from_function(trigger_function(handler, "tasks"), ctx).url
        == "amqp://fallback/"
    )


def test_annotation_the_worker_refuses_is_an_indexing_error() -> None:
    def handler(message: dict) -> None: ...  # type: ignore[type-arg]

    ctx = ListenerContext(Invoker(), HostConfig(), {SETTING: "amqp://h/"}, "t")
    with pytest.raises(IndexingError, match='does not match its Python annotation "dict"'):
        RabbitMQListener(trigger_function(handler, "tasks"), ctx)


def test_describe() -> None:
    def handler(message: str) -> None: ...

    ctx = ListenerContext(Invoker(), HostConfig(), {SETTING: "amqp://h/"}, "t")
    assert (
        RabbitMQListener(trigger_function(handler, "tasks"), ctx).describe()
        == "rabbitMQTrigger (queue tasks)"
    )


def test_binding_as_the_library_writes_it() -> None:
    # Given a function declared the way function_app.py does it, indexed as the worker does
    app = func.FunctionApp()

    @app.generic_trigger(
        arg_name="message",
        type="rabbitMQTrigger",
        queue_name="%TASKS_QUEUE%",
        connection_string_setting=SETTING,
        data_type=func.DataType.BINARY,
    )
    def process(message: bytes) -> None: ...

    environ = {"TASKS_QUEUE": "tasks", SETTING: "amqp://h/"}
    [fn], errors = index(app.get_functions(), Path("."), environ)
    # Then the listener reads the resolved queue, the connection and the data type
    options = RabbitMQTriggerOptions.from_function(fn, ListenerContext(Invoker(), HostConfig(), environ, "t"))
    assert errors == []
    assert (options.queue_name, options.url, options.as_bytes) == ("tasks", "amqp://h/", True)
