"""One bad message never sinks the others: the app's own processing functions, through each trigger.

The processing function of ``functions/processing.py`` runs under our host's Service Bus trigger
(cardinality many, over the Service Bus queue double) and RabbitMQ trigger (a real queue), with the
pipeline on real Valkey.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import azure.functions as func
import pytest

from functions import processing
from local.host.indexing import index
from local.host.invoker import Invoker
from local.host.triggers.rabbitmq import RabbitMQListener
from shared.brokers.rabbitmq import RabbitMQBroker
from shared.brokers.stub import StubBroker
from shared.pipeline import root
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.root import Pipeline
from shared.pipeline.settings import RabbitMQConnection, ServiceBusSettings, Settings
from shared.platform.rabbitmq_topology import QueueTopology, delete_queue_topology
from shared.platform.servicebus_connection import ServiceBusConnection
from shared.secrets import Secret
from shared.store.store import Store
from shared.tasks import registry
from tests.servicebus_fake import FakeServiceBus
from tests.servicebus_harness import listener as servicebus_listener
from tests.test_rabbitmq_trigger import listener_context
from tests.waiting import until

NOT_A_TASK = b"{not json at all"


def echo_task() -> TaskEnvelope:
    return TaskEnvelope(str(uuid.uuid4()), "echo", {"message": "hello"}, time.time())


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    pool = Invoker()
    yield pool
    pool.close()


async def test_a_service_bus_batch_runs_the_good_messages_once_and_dead_letters_only_the_bad_one(
    store: Store, invoker: Invoker
) -> None:
    # Given the app's Service Bus processing function, a pipeline on real Valkey, and a batch of
    # two tasks with a message between them that is not a task
    broker = StubBroker("tasks")
    settings = Settings(broker=ServiceBusSettings(ServiceBusConnection.from_connection_string("unused")))
    root.install(Pipeline(settings, registry, store, broker))
    app = func.FunctionApp()
    processing.servicebus_trigger(app)
    (fn,), errors = index(list(app.get_functions()), Path("."), {"TASKS_QUEUE": "tasks"})
    assert errors == []
    first, second = echo_task(), echo_task()
    bus = FakeServiceBus()
    ids = [bus.send(first.encode()), bus.send(NOT_A_TASK), bus.send(second.encode())]

    # When the trigger delivers them as one batch
    listening = servicebus_listener(fn, bus, invoker)
    try:
        await listening.start()
        await until(lambda: len(bus.completed) == 3)
    finally:
        await listening.stop()
        await root.reset()

    # Then every message is settled at once, none abandoned for another delivery
    assert sorted(bus.completed) == sorted(ids)
    assert bus.abandoned == []
    # and the two tasks ran once each
    for task in (first, second):
        found = await store.task(task.id)
        assert found is not None
        assert (found["status"], found["attempts"]) == ("succeeded", "1")
    # and only the bad message went to the dead-letter queue, with its reason and message id
    (dead,) = broker.dead_letters
    assert (dead.id, dead.body, dead.headers["DeadLetterReason"]) == (ids[1], NOT_A_TASK, "Undecodable")


async def test_a_rabbitmq_message_that_is_not_a_task_is_dead_lettered_at_once(
    store: Store, rabbitmq_url: str
) -> None:
    # Given the app's RabbitMQ processing function on a queue of its own, with the real broker
    queue = f"test-batch-{uuid.uuid4().hex[:12]}"
    settings = Settings(broker=RabbitMQConnection(Secret(rabbitmq_url)), tasks_queue=queue)
    broker = RabbitMQBroker(Secret(rabbitmq_url), queue)
    root.install(Pipeline(settings, registry, store, broker))
    app = func.FunctionApp()
    processing.rabbitmq_trigger(app)
    environ = {"TASKS_QUEUE": queue, "RabbitMQConnection": rabbitmq_url}
    (fn,), errors = index(list(app.get_functions()), Path("."), environ)
    assert errors == []
    listening = RabbitMQListener(fn, listener_context(rabbitmq_url))
    first, second = echo_task(), echo_task()
    try:
        await broker.backlog()  # the sender declares the queue's topology on connecting; the listener none
        await listening.start()
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            for body in (first.encode(), NOT_A_TASK, second.encode()):
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=str(uuid.uuid4())), routing_key=queue
                )

        # When the trigger delivers them
        async def done() -> bool:
            found = [await store.task(t.id) for t in (first, second)]
            return all(f is not None and f.get("status") == "succeeded" for f in found)

        deadline = time.monotonic() + 10
        while not await done():
            assert time.monotonic() < deadline, "the two tasks did not succeed within 10 s"
            await asyncio.sleep(0.1)

        # Then the bad message is in the dead-letter queue with its reason, after one delivery
        dead_letters = QueueTopology.for_queue(queue).dead_letter_queue
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            waiting = await channel.declare_queue(dead_letters, passive=True)
            dead = None
            deadline = time.monotonic() + 5
            while dead is None and time.monotonic() < deadline:
                dead = await waiting.get(fail=False)
                await asyncio.sleep(0.05)
            assert dead is not None
            assert dead.body == NOT_A_TASK
            assert dead.headers["DeadLetterReason"] == "Undecodable"
            assert "x-ms-rabbitmq-requeuecount" not in dead.headers
            await dead.ack()
        # and each good task ran once
        for task in (first, second):
            found = await store.task(task.id)
            assert found is not None
            assert found["attempts"] == "1"
    finally:
        await listening.stop()
        await root.reset()
        await delete_queue_topology(rabbitmq_url, queue)
