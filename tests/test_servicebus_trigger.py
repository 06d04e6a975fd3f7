"""``serviceBusTrigger`` deliveries: settlement, redelivery to the dead-letter queue, batches, concurrency.

The listener runs against ``tests.servicebus_fake``, a queue behind the SDK's receiver API that hands
out real ``ServiceBusReceivedMessage`` objects and applies Service Bus's delivery rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, List  # noqa: UP035 (the Python worker rejects list[...] here)

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage as WorkerServiceBusMessage

from local.host.invoker import Invoker
from tests.servicebus_fake import FakeServiceBus
from tests.servicebus_harness import TRACEPARENT, indexed, listener, queue_function
from tests.waiting import until


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    pool = Invoker()
    yield pool
    pool.close()


async def test_a_message_whose_function_succeeds_is_completed(invoker: Invoker) -> None:
    # Given a queued task and a function that accepts it
    seen: list[Any] = []

    async def process(msg: func.ServiceBusMessage) -> None:
        seen.append(msg)

    bus = FakeServiceBus()
    message_id = bus.send(b'{"type": "echo"}', content_type="application/json")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When the listener runs
    await sb.start()
    await until(lambda: bool(bus.completed))
    await sb.stop()

    # Then the function got the worker's ServiceBusMessage and the message was completed
    assert bus.entity == ("tasks",)
    assert bus.completed == [message_id]
    assert bus.abandoned == []
    (msg,) = seen
    assert isinstance(msg, WorkerServiceBusMessage)
    assert (msg.get_body(), msg.message_id, msg.delivery_count) == (b'{"type": "echo"}', message_id, 1)
    assert bus.closed == ["receiver", "client"]


async def test_an_exception_abandons_and_service_bus_redelivers(invoker: Invoker) -> None:
    # Given a function that fails on the first delivery only
    deliveries: list[int | None] = []

    def process(msg: func.ServiceBusMessage) -> None:
        deliveries.append(msg.delivery_count)
        if len(deliveries) == 1:
            raise RuntimeError("transient failure")

    bus = FakeServiceBus()
    message_id = bus.send("task")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When it runs until the message is done
    await sb.start()
    await until(lambda: bool(bus.completed))
    await sb.stop()

    # Then the first delivery was abandoned and the second completed
    assert bus.abandoned == [message_id]
    assert bus.completed == [message_id]
    assert deliveries == [1, 2]


async def test_a_function_that_always_fails_ends_in_the_dead_letter_queue(invoker: Invoker) -> None:
    # Given a queue with MaxDeliveryCount 3 and a function that always raises
    deliveries: list[int | None] = []

    async def process(msg: func.ServiceBusMessage) -> None:
        deliveries.append(msg.delivery_count)
        raise ValueError("cannot be processed")

    bus = FakeServiceBus(max_delivery_count=3)
    message_id = bus.send("poison")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When the listener runs until Service Bus gives up
    await sb.start()
    await until(lambda: bool(bus.dead_letters))
    await sb.stop()

    # Then it was tried three times, abandoned each time, never completed, and dead-lettered
    assert deliveries == [1, 2, 3]
    assert bus.abandoned == [message_id] * 3
    assert bus.completed == []
    assert bus.dead_letters[0].dead_letter_reason == "MaxDeliveryCountExceeded"


async def test_cardinality_many_gets_batches_one_at_a_time_and_completes_them(invoker: Invoker) -> None:
    # Given five messages and a batch function limited to two per batch
    batches: list[list[str]] = []
    active = 0
    most_active = 0

    async def process(msg: List[func.ServiceBusMessage]) -> None:  # noqa: UP006 (worker)
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await asyncio.sleep(0.01)
        batches.append([m.message_id for m in msg])
        active -= 1

    bus = FakeServiceBus()
    ids = [bus.send(f"task {i}") for i in range(5)]
    fn = indexed(queue_function(process, cardinality=func.Cardinality.MANY))
    sb = listener(fn, bus, invoker, {"maxMessageBatchSize": 2})

    # When the listener runs
    await sb.start()
    await until(lambda: len(bus.completed) == 5)
    await sb.stop()

    # Then the function saw lists of at most two, never two batches at once, and every message completed
    assert [len(b) for b in batches] == [2, 2, 1]
    assert [message_id for batch in batches for message_id in batch] == ids
    assert most_active == 1
    assert sorted(bus.completed) == sorted(ids)
    assert set(bus.receive_requests) == {2}


async def test_a_failing_batch_abandons_every_message_of_it(invoker: Invoker) -> None:
    # Given a batch function that fails once
    calls = 0

    async def process(msg: List[func.ServiceBusMessage]) -> None:  # noqa: UP006 (worker)
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the store is down")

    bus = FakeServiceBus()
    ids = [bus.send(f"task {i}") for i in range(3)]
    sb = listener(indexed(queue_function(process, cardinality=func.Cardinality.MANY)), bus, invoker)

    # When it runs until every message is completed
    await sb.start()
    await until(lambda: len(bus.completed) == 3)
    await sb.stop()

    # Then the whole first batch was abandoned, and the redelivered batch completed
    assert sorted(bus.abandoned) == sorted(ids)
    assert sorted(bus.completed) == sorted(ids)


async def test_no_more_than_max_concurrent_calls_run_at_once(invoker: Invoker) -> None:
    # Given ten messages and maxConcurrentCalls 3
    active = 0
    most_active = 0

    async def process(msg: func.ServiceBusMessage) -> None:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await asyncio.sleep(0.02)
        active -= 1

    bus = FakeServiceBus()
    for i in range(10):
        bus.send(f"task {i}")
    sb = listener(indexed(queue_function(process)), bus, invoker, {"maxConcurrentCalls": 3})

    # When the listener runs
    await sb.start()
    await until(lambda: len(bus.completed) == 10)
    await sb.stop()

    # Then three ran together at most, and no receive asked for more than the free slots
    assert most_active == 3
    assert max(bus.receive_requests) == 3


async def test_without_auto_complete_a_success_leaves_the_message_to_its_lock(invoker: Invoker) -> None:
    # Given autoCompleteMessages false on the binding
    async def process(msg: func.ServiceBusMessage) -> None:
        if msg.get_body() == b"fails":
            raise RuntimeError("fails")

    bus = FakeServiceBus(max_delivery_count=1)
    first, second = bus.send("ok"), bus.send("fails")
    fn = indexed(queue_function(process, auto_complete_messages=False))
    sb = listener(fn, bus, invoker, {"maxConcurrentCalls": 1})

    # When both messages were handled
    await sb.start()
    await until(lambda: bool(bus.abandoned))
    await sb.stop()

    # Then the success was not completed (the function owns it), and the failure was abandoned
    assert bus.completed == []
    assert bus.abandoned == [second]
    assert [entry.sent.message_id for entry in bus.locked.values()] == [first]


async def test_trace_context_comes_from_the_message(invoker: Invoker) -> None:
    # Given messages carrying W3C trace context the two ways producers write it
    parents: list[tuple[str, str]] = []

    async def process(msg: func.ServiceBusMessage, context: func.Context) -> None:
        parents.append((context.trace_context.trace_parent, context.trace_context.trace_state))

    bus = FakeServiceBus()
    bus.send("a", application_properties={"traceparent": TRACEPARENT, "tracestate": "vendor=1"})
    bus.send("b", application_properties={"Diagnostic-Id": TRACEPARENT})
    bus.send("c")
    sb = listener(indexed(queue_function(process)), bus, invoker, {"maxConcurrentCalls": 1})

    # When they are processed
    await sb.start()
    await until(lambda: len(bus.completed) == 3)
    await sb.stop()

    # Then each invocation continued its message's trace
    assert parents == [(TRACEPARENT, "vendor=1"), (TRACEPARENT, ""), ("", "")]


async def test_a_bytes_parameter_gets_the_body(invoker: Invoker) -> None:
    # Given a function that takes the body as bytes
    bodies: list[bytes] = []

    def process(msg: bytes) -> None:
        bodies.append(msg)

    bus = FakeServiceBus()
    bus.send(b"\x00raw")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    await sb.start()
    await until(lambda: bool(bus.completed))
    await sb.stop()

    assert bodies == [b"\x00raw"]
