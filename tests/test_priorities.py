"""Priority lanes: a queue and a queue-triggered function per priority, the same on both brokers.

The measurement the lanes exist for: a ``high`` task submitted behind a backlog of 400 ``low`` ones
finishes before most of them, where a ``low`` task submitted at the same moment finishes after
nearly all of them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest

from functions.processing import rabbitmq_trigger, servicebus_trigger
from shared.brokers.lanes import PRIORITIES, Lanes, lane_queue
from shared.errors import ValidationError
from shared.pipeline.accept import Accepter
from shared.pipeline.hooks import Hooks
from shared.pipeline.settings import ServiceBusSettings
from shared.pipeline.submission import parse_submission
from shared.platform.servicebus_connection import ServiceBusConnection
from shared.store.store import Store
from shared.tasks import registry
from tests.conftest import require_service
from tests.doubles.servicebus_amqp import FakeServiceBus
from tests.hosting import RunningHost, start_host
from tests.waiting import eventually

LOW_BACKLOG = 400
#: Long enough that 400 low tasks take seconds on one lane's 30 concurrent deliveries.
TASK_SECONDS = 0.2


def test_a_priority_is_one_of_three_and_defaults_to_normal() -> None:
    (high,) = parse_submission(b'{"type": "echo", "priority": "high"}', registry).envelopes
    (plain,) = parse_submission(b'{"type": "echo"}', registry).envelopes
    assert (high.priority, plain.priority) == ("high", "normal")
    assert b"priority" not in plain.encode()  # the wire form of a normal task is unchanged
    with pytest.raises(ValidationError) as raised:
        parse_submission(b'[{"type": "echo"}, {"type": "echo", "priority": "urgent"}]', registry)
    (error,) = raised.value.errors
    assert (error.index, error.field) == (1, "priority")
    assert "'high', 'normal', 'low'" in error.message


@pytest.mark.parametrize("trigger", [rabbitmq_trigger, servicebus_trigger])
def test_each_lane_has_its_own_function_on_its_own_queue(trigger: Callable[..., None]) -> None:
    app = func.FunctionApp()
    for priority in PRIORITIES:
        trigger(app, priority)
    queues = {
        f.get_function_name(): b.get_dict_repr().get("queueName")
        for f in app.get_functions()
        for b in f.get_bindings()
    }
    assert queues == {
        "process_tasks": "%TASKS_QUEUE%",
        "process_tasks_high": "%TASKS_QUEUE%.high",
        "process_tasks_low": "%TASKS_QUEUE%.low",
    }


@pytest.fixture
async def service_bus() -> AsyncIterator[FakeServiceBus]:
    queues = {lane_queue("tasks", p) for p in PRIORITIES}
    async with FakeServiceBus(queues | {f"{q}.dead-letter" for q in queues}) as bus:
        yield bus


async def test_on_service_bus_a_high_task_is_queued_behind_no_low_one(
    service_bus: FakeServiceBus, store: Store
) -> None:
    # Given the Azure profile's broker, built as in production over the Service Bus double
    connection = ServiceBusConnection.from_connection_string(service_bus.connection_string())
    broker = ServiceBusSettings(connection).build_broker("tasks")
    assert isinstance(broker, Lanes)
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=10_000)
    try:
        # When 400 low tasks are submitted, then a high one
        low = json.dumps([{"type": "echo", "priority": "low"}] * LOW_BACKLOG).encode()
        await accepter.accept(low)
        (high_id,) = (await accepter.accept(b'{"type": "echo", "priority": "high"}')).ids
    finally:
        await broker.close()

    # Then the high one is first in its own queue, the low ones are in theirs, and normal is empty
    assert service_bus.ids("tasks.high") == [high_id]
    assert len(service_bus.ids("tasks.low")) == LOW_BACKLOG
    assert service_bus.ids("tasks") == []
    # And a retry or a dead letter keeps to the lane: the envelope carries its priority
    (sent,) = [m for m in service_bus.messages if m.queue == "tasks.high"]
    assert json.loads(sent.body)["priority"] == "high"


@pytest.fixture(scope="module")
def lanes_host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("valkey")
    running = start_host()
    yield running
    running.stop()


def _submit(http: httpx.Client, tasks: list[dict[str, Any]]) -> list[str]:
    answer = http.post("/api/tasks", json=tasks)
    assert answer.status_code == 202, answer.text
    return [t["id"] for t in answer.json()]


def _finished_at(http: httpx.Client, task_ids: list[str]) -> dict[str, str] | None:
    """When each task finished; None while any has not succeeded yet."""
    found = {}
    for task_id in task_ids:
        view = http.get(f"/api/tasks/{task_id}").json()
        if view["status"] != "succeeded":
            return None
        found[task_id] = str(view["finished_at"])
    return found


def test_a_high_task_behind_400_low_ones_finishes_before_most_of_them(lanes_host: RunningHost) -> None:
    sleep = {"type": "sleep", "payload": {"seconds": TASK_SECONDS}}
    with lanes_host.client() as http:
        # Given 400 low tasks queued, each taking 0.2 s
        low = _submit(http, [sleep | {"priority": "low"}] * LOW_BACKLOG)
        # When a high task and one more low task are submitted behind them
        high, last_low = _submit(http, [sleep | {"priority": "high"}, sleep | {"priority": "low"}])

        started = time.monotonic()

        # Then the stats show the backlog per lane while it drains
        def low_lane_backlog() -> object:
            backlog = http.get("/api/stats").json()["backlog"]
            return backlog and (backlog.get("lanes") or {}).get("low")

        eventually(low_lane_backlog, 10, "a low-lane backlog in /api/stats")
        # (a task's finished_at is an ISO 8601 UTC time: as text they sort as times)
        finished = None
        while finished is None and time.monotonic() - started < 60:
            time.sleep(0.5)
            finished = _finished_at(http, [*low, high, last_low])
        assert finished is not None, "the 402 tasks did not all finish within 60 s"
        took = time.monotonic() - started

    low_times = sorted(finished[i] for i in low)
    high_ahead = sum(1 for t in low_times if t > finished[high])
    low_ahead = sum(1 for t in low_times if t > finished[last_low])
    print(
        f"\nhigh task finished before {high_ahead}/{LOW_BACKLOG} low tasks queued ahead of it;"
        f" a low task submitted with it, before {low_ahead}/{LOW_BACKLOG}; backlog drained in {took:.1f}s"
    )
    # The high one finishes before at least three quarters of the low ones ahead of it
    assert high_ahead >= LOW_BACKLOG * 3 // 4
    # while its twin in the low lane waits behind nearly all of them: the lane made the difference
    assert low_ahead <= LOW_BACKLOG // 10
    lines = "\n".join(lanes_host.output)
    for priority in PRIORITIES:
        assert f"queue {lane_queue(lanes_host.queue, priority)} for" in lines
