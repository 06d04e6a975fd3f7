"""Retries back off, early deliveries wait, and Valkey being down is no attempt of a task.

The processor on real Valkey with the stub broker (whose scheduled messages a test clock reaches),
and the RabbitMQ broker's wait queues against a real RabbitMQ.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import msgspec
import pytest

from shared.brokers.base import OutgoingMessage
from shared.brokers.rabbitmq import RabbitMQBroker
from shared.brokers.stub import StubBroker
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import STORE_OUTAGE_DELAY, Processor
from shared.pipeline.registry import Registry
from shared.platform.rabbitmq_topology import delete_queue_topology
from shared.secrets import Secret
from shared.store.store import Store
from tests.hosting import free_port
from tests.waiting import Clock

BACKOFF = 10.0


class Payload(msgspec.Struct):
    value: int = 0


def failing_registry(runs: Counter[str]) -> Registry:
    registry = Registry()

    @registry.task("flaky", max_attempts=4, backoff=BACKOFF, backoff_max=25.0)
    async def flaky(payload: Payload) -> None:
        runs["flaky"] += 1
        raise RuntimeError("downstream said no")

    @registry.task("ok")
    async def ok(payload: Payload) -> int:
        runs["ok"] += 1
        return payload.value

    return registry


def task(task_type: str, task_id: str | None = None, not_before: float | None = None) -> Delivery:
    envelope = TaskEnvelope(task_id or str(uuid.uuid4()), task_type, {}, time.time(), not_before)
    return Delivery(envelope.encode(), envelope.id)


async def test_each_retry_waits_its_backoff_doubling_to_the_cap(
    store: Store, runs: Counter[str], clock: Clock
) -> None:
    # Given a task type with a 10 s backoff capped at 25 s, that always fails
    broker = StubBroker()
    processor = Processor(store, broker, failing_registry(runs), Hooks(), clock=clock)
    message = task("flaky", "t-backoff")
    waits = []
    # When its attempts run, each when the broker hands it over
    for _ in range(3):
        started = clock.now
        (decision,) = await processor.process([message])
        assert decision.verdict is Verdict.RETRIED
        resent = broker.take()
        assert resent.scheduled_at is not None
        due = resent.scheduled_at.timestamp()
        waits.append(due - started)
        # the envelope itself says when, so an early delivery cannot run it
        assert TaskEnvelope.decode(resent.body).not_before == pytest.approx(due, abs=0.001)
        status = await store.task("t-backoff")
        assert status is not None
        assert datetime.fromtimestamp(float(status["retry_at"]), UTC).timestamp() == pytest.approx(due)
        assert "downstream said no" in status["traceback"]
        assert "RuntimeError" in status["traceback"]
        clock.reach(due)
        message = Delivery(resent.body, resent.id)
    # Then the waits are half fixed, half random, and double up to the cap: [5,10], [10,20], [12.5,25]
    first, second, third = waits
    assert BACKOFF / 2 <= first <= BACKOFF + 0.1
    assert BACKOFF <= second <= 2 * BACKOFF + 0.1
    assert 12.5 <= third <= 25.1
    assert runs["flaky"] == 3


async def test_a_delivery_before_its_time_is_put_off_without_an_attempt(
    store: Store, runs: Counter[str], clock: Clock
) -> None:
    # Given a task that may run only in a minute, delivered now
    broker = StubBroker()
    processor = Processor(store, broker, failing_registry(runs), Hooks(), clock=clock)
    due = clock.now + 60

    # When it is processed
    (decision,) = await processor.process([task("ok", "t-early", not_before=due)])

    # Then it did not run and used no attempt; it goes back to arrive when due
    assert decision.verdict is Verdict.DEFERRED
    assert runs["ok"] == 0
    assert await store.task("t-early") is None
    (again,) = broker.messages
    assert again.scheduled_at is not None
    assert again.scheduled_at.timestamp() == pytest.approx(due)
    # And once due, it runs
    clock.reach(due)
    (done,) = await processor.process([Delivery(again.body, again.id)])
    assert done.verdict is Verdict.COMPLETED
    assert runs["ok"] == 1


async def test_valkey_down_is_no_attempt_the_deliveries_are_put_off(
    runs: Counter[str], clock: Clock, valkey_url: str
) -> None:
    # Given a processor whose Valkey does not answer, and a short patience
    unreachable = Store(f"valkey://127.0.0.1:{free_port()}/0")
    broker = StubBroker()
    processor = Processor(
        unreachable, broker, failing_registry(runs), Hooks(), store_patience=0.5, clock=clock
    )
    deliveries = [task("ok", f"t-outage-{n}") for n in range(3)]

    # When deliveries arrive
    started = time.monotonic()
    decisions = await processor.process(deliveries)

    # Then it tried Valkey again before giving up (the first wait is at least 0.1 s), ran nothing, and
    # put each off through the broker
    assert time.monotonic() - started >= 0.1
    assert [d.verdict for d in decisions] == [Verdict.DEFERRED] * 3
    assert runs["ok"] == 0
    assert sorted(TaskEnvelope.decode(m.body).id for m in broker.messages) == [
        f"t-outage-{n}" for n in range(3)
    ]
    for message in broker.messages:
        assert message.scheduled_at is not None
        assert message.scheduled_at.timestamp() == pytest.approx(clock.now + STORE_OUTAGE_DELAY)
    await unreachable.close()
    # And once Valkey answers, the same messages run as first attempts
    store = Store(valkey_url)
    try:
        healthy = Processor(store, broker, failing_registry(runs), Hooks(), clock=clock)
        later = [Delivery(m.body, m.id) for m in broker.messages]
        assert [d.verdict for d in await healthy.process(later)] == [Verdict.COMPLETED] * 3
        status = await store.task("t-outage-0")
        assert status is not None
        assert status["attempts"] == "1"
    finally:
        await store.client.delete(*(f"tl:task:t-outage-{n}" for n in range(3)))
        await store.close()


@pytest.fixture
async def rabbitmq_queue(rabbitmq_url: str) -> AsyncIterator[str]:
    queue = f"test-wait-{uuid.uuid4().hex[:12]}"
    yield queue
    await delete_queue_topology(rabbitmq_url, queue)


async def test_rabbitmq_holds_a_scheduled_message_in_a_wait_queue_until_it_is_due(
    rabbitmq_url: str, rabbitmq_queue: str
) -> None:
    # Given the RabbitMQ broker and a message scheduled 1.5 s from now
    broker = RabbitMQBroker(Secret(rabbitmq_url), rabbitmq_queue)
    sent = time.time()
    due = sent + 1.5
    try:
        await broker.send_batch(
            [OutgoingMessage("later", b"{}", scheduled_at=datetime.fromtimestamp(due, UTC))]
        )
        # When the work queue is watched
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(rabbitmq_queue, passive=True)
            arrived = None
            deadline = time.monotonic() + 10
            while arrived is None and time.monotonic() < deadline:
                message = await queue.get(fail=False)
                if message is not None:
                    arrived = time.time()
                    assert message.message_id == "later"
                    await message.ack()
                await asyncio.sleep(0.05)
    finally:
        await broker.close()

    # Then it came back after its 1 s wait tier, not at once (the pipeline waits out the rest)
    assert arrived is not None, "the scheduled message never came back to the work queue"
    assert arrived - sent >= 0.9
