"""Redrive: one task by id, or the whole dead-letter queue; attempts reset, the old dead letter gone,
never twice by one call. Through a running host on real RabbitMQ and Valkey, and the processor with
the stub broker for a task that succeeds the second time."""

from __future__ import annotations

import asyncio
import json
import uuid

import aio_pika
import msgspec

from shared.brokers.stub import StubBroker
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import Processor
from shared.pipeline.redrive import Redriver
from shared.pipeline.registry import PermanentError, Registry
from shared.platform.rabbitmq_topology import QueueTopology
from shared.store.store import Store
from tests.conftest import RABBITMQ_URL
from tests.hosting import RunningHost
from tests.waiting import eventually

PERMANENT = {"type": "fail", "payload": {"reason": "bad input", "permanent": True}}


def submit(host: RunningHost, document: object) -> list[str]:
    with host.client() as http:
        response = http.post("/api/tasks", json=document)
    assert response.status_code == 202, response.text
    found = response.json()
    return [item["id"] for item in (found if isinstance(found, list) else [found])]


def status(host: RunningHost, task_id: str) -> dict[str, object]:
    with host.client() as http:
        return dict(http.get(f"/api/tasks/{task_id}").json())


def dead_letters(host: RunningHost) -> list[str]:
    """The task ids in the host's dead-letter queue, left where they are."""

    async def peek() -> list[str]:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(
                QueueTopology.for_queue(host.queue).dead_letter_queue, passive=True
            )
            ids = []
            while (message := await queue.get(fail=False)) is not None:
                ids.append(TaskEnvelope.decode(message.body).id)
            return ids  # unacknowledged: back in the queue when the channel closes

    return asyncio.run(peek())


def dead_lettered(host: RunningHost, ids: list[str]) -> None:
    eventually(lambda: all(status(host, i)["status"] == "dead-lettered" for i in ids), within=15)
    eventually(lambda: sorted(dead_letters(host)) == sorted(ids), within=5)


def test_retrying_a_dead_lettered_task_resends_it_and_takes_its_dead_letter_away(host: RunningHost) -> None:
    # Given a task dead-lettered on its first attempt
    (task_id,) = submit(host, PERMANENT)
    dead_lettered(host, [task_id])

    # When it is retried
    with host.client() as http:
        response = http.post(f"/api/tasks/{task_id}/retry")

    # Then it is accepted again, runs again from attempt 1, and its one dead letter is the new one
    assert response.status_code == 202
    assert response.json() == {"id": task_id, "status": "queued"}
    eventually(
        lambda: status(host, task_id)["status"] == "dead-lettered" and status(host, task_id)["attempts"] == 1
    )
    eventually(lambda: dead_letters(host) == [task_id], within=5)
    with host.client() as http:
        assert http.get("/api/stats").json()["totals"]["redriven"] >= 1


def test_retry_answers_409_for_a_task_that_did_not_fail_and_404_for_none(host: RunningHost) -> None:
    (done,) = submit(host, {"type": "echo", "payload": {"message": 1}})
    eventually(lambda: status(host, done)["status"] == "succeeded")
    with host.client() as http:
        conflict = http.post(f"/api/tasks/{done}/retry")
        missing = http.post(f"/api/tasks/{uuid.uuid4()}/retry")
    assert conflict.status_code == 409
    assert conflict.json()["status"] == "succeeded"
    assert missing.status_code == 404


def test_redrive_resends_every_dead_letter_once_and_leaves_other_types(host: RunningHost) -> None:
    # Given three more dead-lettered tasks
    earlier = dead_letters(host)
    ids = submit(host, [PERMANENT, PERMANENT, PERMANENT])
    dead_lettered(host, ids + earlier)
    before = dead_letters(host)

    # When the dead-letter queue is redriven, first for another type, then for all
    with host.client() as http:
        none = http.post("/api/dead-letters/redrive", params={"type": "echo"}).json()
        redriven = http.post("/api/dead-letters/redrive").json()

    # Then the first touched nothing, the second re-sent each once, and each is back once (it fails again)
    assert none["redriven"] == 0
    assert redriven["redriven"] == len(before)
    eventually(lambda: sorted(dead_letters(host)) == sorted(before), within=15)
    for task_id in ids:
        assert status(host, task_id)["attempts"] == 1


class Payload(msgspec.Struct):
    pass


async def test_a_redriven_task_that_succeeds_leaves_the_dead_letter_queue(store: Store) -> None:
    # Given a task whose handler fails permanently the first time and succeeds after
    runs: list[int] = []
    registry = Registry()

    @registry.task("once-broken")
    async def once_broken(payload: Payload) -> str:
        runs.append(1)
        if len(runs) == 1:
            raise PermanentError("not yet")
        return "fine"

    broker = StubBroker()
    processor = Processor(store, broker, registry, Hooks())
    task_id = f"t-{uuid.uuid4().hex[:8]}"
    first = TaskEnvelope(task_id, "once-broken", {}, 0.0)
    (dead,) = await processor.process([Delivery(first.encode(), task_id)])
    assert dead.verdict is Verdict.DEAD_LETTERED

    # When the dead-letter queue is redriven twice
    redriver = Redriver(store, broker, Hooks())
    assert await redriver.redrive_all() == 1
    assert await redriver.redrive_all() == 0

    # Then it ran again and succeeded, and nothing is left dead-lettered
    (again,) = broker.messages
    (done,) = await processor.process([Delivery(again.body, again.id)])
    assert done.verdict is Verdict.COMPLETED
    assert broker.dead_letters == []
    found = await store.task(task_id)
    assert found is not None
    assert (found["status"], found["attempts"], json.loads(found["result"])) == ("succeeded", "1", "fine")
