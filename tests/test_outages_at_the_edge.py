"""While the broker is down, submissions answer 503 at once, leave nothing behind, and the log tells
the outage once."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from shared.brokers.rabbitmq import RabbitMQBroker
from shared.brokers.stub import StubBroker
from shared.errors import BrokerError
from shared.pipeline.accept import FAST_FAIL_SECONDS, Accepter
from shared.pipeline.hooks import Hooks
from shared.secrets import Secret
from shared.store.store import Store
from shared.tasks import registry
from tests.hosting import free_port

TASK = json.dumps({"type": "echo", "payload": {"message": 1}}).encode()


class FailingBroker(StubBroker):
    """Refuses every send while ``down``; counts the sends it was asked for."""

    def __init__(self) -> None:
        super().__init__("tasks")
        self.down = True
        self.asked = 0

    async def send_batch(self, messages):  # type: ignore[no-untyped-def]
        self.asked += 1
        if self.down:
            raise BrokerError("queue 'tasks': connection refused")
        await super().send_batch(messages)


async def test_an_unreachable_rabbitmq_is_a_broker_error_quickly_and_leaves_no_record(store: Store) -> None:
    # Given an accepter whose RabbitMQ is a port nothing listens on
    broker = RabbitMQBroker(Secret(f"amqp://guest:guest@127.0.0.1:{free_port()}/"), "tasks", timeout=2)
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=1000)

    # When a task is submitted
    with pytest.raises(BrokerError, match="RabbitMQ is not reachable"):
        await asyncio.wait_for(accepter.accept(TASK), 10)

    # Then nothing of it is left in Valkey: no task, no counter
    assert (await store.stats())["totals"]["accepted"] == 0
    assert [key async for key in store.client.scan_iter("tl:task:*")] == []
    await broker.close()


async def test_an_outage_is_logged_once_and_requests_fail_fast_until_it_ends(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.pipeline.patience")
    # Given a broker that refuses sends
    broker = FailingBroker()
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=1000)

    # When ten tasks are submitted in a row
    for _ in range(10):
        with pytest.raises(BrokerError):
            await accepter.accept(TASK)

    # Then the broker was tried once; the other nine answered at once, and one WARNING tells the outage
    assert broker.asked == 1
    assert [r.getMessage() for r in caplog.records] == [
        "The broker is unreachable: queue 'tasks': connection refused"
    ]
    assert (await store.stats())["totals"]["accepted"] == 0
    # And once it is back, the next submission after the fast-fail second goes through, and says so
    broker.down = False
    await asyncio.sleep(FAST_FAIL_SECONDS + 0.05)
    accepted = await accepter.accept(TASK)
    assert len(accepted.ids) == 1
    assert caplog.records[-1].getMessage().startswith("The broker is reachable again after")
