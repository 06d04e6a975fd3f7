"""``serviceBusTrigger`` against a real Service Bus namespace: what the double stands in for.

Runs when ``SERVICEBUS_QUEUE`` and a connection are set: ``SERVICEBUS_CONNECTION_STRING``, or the
identity-based ``ServiceBusConnection__fullyQualifiedNamespace`` (plus ``__credential``/``__clientId``
as in Azure). Use a queue of its own: the listener takes every message it finds there, completing
only the test's and abandoning the others.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, List  # noqa: UP035 (the Python worker rejects list[...] here)

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from local.host.invoker import Invoker
from local.host.settings import HostConfig
from local.host.triggers import ListenerContext
from local.host.triggers.servicebus import ServiceBusListener
from local.host.triggers.servicebus_client import sdk_client
from local.host.triggers.servicebus_options import ServiceBusTriggerOptions
from shared.platform.servicebus_connection import resolve_connection
from tests.servicebus_harness import indexed, queue_function
from tests.waiting import until

pytestmark = pytest.mark.contract

IDENTITY_PREFIX = "ServiceBusConnection__"


def live_settings() -> dict[str, str]:
    """The app settings for the live namespace, or a skip that names what to set."""
    queue = os.environ.get("SERVICEBUS_QUEUE", "")
    settings = {k: v for k, v in os.environ.items() if k.startswith(IDENTITY_PREFIX)}
    if os.environ.get("SERVICEBUS_CONNECTION_STRING"):
        settings = {"ServiceBusConnection": os.environ["SERVICEBUS_CONNECTION_STRING"]}
    if not queue or not (
        settings.get("ServiceBusConnection") or settings.get(f"{IDENTITY_PREFIX}fullyQualifiedNamespace")
    ):
        pytest.skip(
            "no Service Bus namespace: set SERVICEBUS_QUEUE and SERVICEBUS_CONNECTION_STRING "
            "(or ServiceBusConnection__fullyQualifiedNamespace for an identity-based connection)"
        )
    return {**settings, "TASKS_QUEUE": queue}


@pytest.fixture
async def live() -> AsyncIterator[tuple[dict[str, str], Invoker]]:
    settings = live_settings()
    invoker = Invoker()
    yield settings, invoker
    invoker.close()


@asynccontextmanager
async def sdk_client_for(settings: dict[str, str]) -> AsyncIterator[ServiceBusClient]:
    """An SDK client on the same connection the listener resolves, to send and peek with."""
    connection = resolve_connection(settings, "ServiceBusConnection")
    options = ServiceBusTriggerOptions(
        function_name="contract",
        connection_name="ServiceBusConnection",
        queue_name=settings["TASKS_QUEUE"],
        topic_name=None,
        subscription_name=None,
        many=False,
        auto_complete=True,
    )
    async with AsyncExitStack() as stack:
        client = sdk_client(connection, options, stack)
        assert isinstance(client, ServiceBusClient)
        yield client


async def send(settings: dict[str, str], *messages: ServiceBusMessage) -> None:
    async with sdk_client_for(settings) as client, client.get_queue_sender(settings["TASKS_QUEUE"]) as sender:
        await sender.send_messages(list(messages))


async def still_queued(settings: dict[str, str], message_ids: set[str]) -> set[str]:
    """Which of ``message_ids`` a peek still finds in the queue."""
    async with (
        sdk_client_for(settings) as client,
        client.get_queue_receiver(settings["TASKS_QUEUE"]) as receiver,
    ):
        peeked = await receiver.peek_messages(max_message_count=250)
    return {str(m.message_id) for m in peeked} & message_ids


def start_listener(
    register: Any, settings: dict[str, str], invoker: Invoker, host: dict[str, Any]
) -> ServiceBusListener:
    ctx = ListenerContext(
        invoker, HostConfig({"extensions": {"serviceBus": host}}), dict(settings), "contract"
    )
    return ServiceBusListener(indexed(register, settings), ctx, receive_wait=1.0, stop_grace=10.0)


async def test_a_sent_message_is_invoked_and_completed(live: tuple[dict[str, str], Invoker]) -> None:
    # Given a message sent with the SDK, carrying trace context
    settings, invoker = live
    run = uuid.uuid4().hex
    traceparent = f"00-{run}-{run[:16]}-01"
    seen: list[tuple[str, int | None, str]] = []

    async def process(msg: func.ServiceBusMessage, context: func.Context) -> None:
        if msg.message_id != run:
            raise RuntimeError("not this test's message")
        seen.append((msg.get_body().decode(), msg.delivery_count, context.trace_context.trace_parent))

    await send(
        settings,
        ServiceBusMessage(
            f"hello {run}", message_id=run, application_properties={"traceparent": traceparent}
        ),
    )
    sb = start_listener(queue_function(process), settings, invoker, {"maxConcurrentCalls": 4})

    # When the listener runs until the function saw it
    await sb.start()
    try:
        await until(lambda: bool(seen), within=60)
    finally:
        await sb.stop()

    # Then it was invoked once, as the first delivery, with its trace, and is gone from the queue
    assert seen == [(f"hello {run}", 1, traceparent)]
    assert await still_queued(settings, {run}) == set()


async def test_an_abandoned_message_comes_back_with_its_delivery_counted(
    live: tuple[dict[str, str], Invoker],
) -> None:
    # Given a function that fails the first delivery of the test's message
    settings, invoker = live
    run = uuid.uuid4().hex
    deliveries: list[int | None] = []

    async def process(msg: func.ServiceBusMessage) -> None:
        if msg.message_id != run:
            raise RuntimeError("not this test's message")
        deliveries.append(msg.delivery_count)
        if len(deliveries) == 1:
            raise RuntimeError("first delivery fails")

    await send(settings, ServiceBusMessage(b"retry me", message_id=run))
    sb = start_listener(queue_function(process), settings, invoker, {"maxConcurrentCalls": 1})

    # When the listener runs until the second delivery
    await sb.start()
    try:
        await until(lambda: len(deliveries) == 2, within=60)
        await asyncio.sleep(1)  # let the completion reach the service
    finally:
        await sb.stop()

    # Then Service Bus counted both deliveries as the function sees them in Azure, and the message is done
    assert deliveries == [1, 2]
    assert await still_queued(settings, {run}) == set()


async def test_a_batch_function_gets_the_messages_as_a_list(live: tuple[dict[str, str], Invoker]) -> None:
    # Given three messages and a batch function
    settings, invoker = live
    run = uuid.uuid4().hex
    ids = {f"{run}-{i}" for i in range(3)}
    seen: set[str] = set()

    async def process(msg: List[func.ServiceBusMessage]) -> None:  # noqa: UP006 (worker)
        if any(m.message_id not in ids for m in msg):
            raise RuntimeError("a batch with other messages")
        seen.update(m.message_id for m in msg)

    await send(settings, *(ServiceBusMessage(b"batch", message_id=i) for i in sorted(ids)))
    register = queue_function(process, cardinality=func.Cardinality.MANY)
    sb = start_listener(register, settings, invoker, {"maxMessageBatchSize": 10})

    # When the listener runs until all three were seen
    await sb.start()
    try:
        await until(lambda: seen == ids, within=60)
        await asyncio.sleep(1)
    finally:
        await sb.stop()

    # Then all were completed
    assert await still_queued(settings, ids) == set()
