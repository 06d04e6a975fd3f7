"""Accepting and processing tasks against real Valkey (the broker is the in-memory stub here;
the RabbitMQ path is covered end to end through the host in test_end_to_end.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from shared import tasks as _builtin_tasks  # noqa: F401
from shared.brokers.base import Backlog
from shared.brokers.stub import StubBroker
from shared.errors import BackpressureError, BrokerError, DecodeError, TaskFailedError, ValidationError
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.process import Accepter, Processor, parse_submission
from shared.pipeline.registry import registry
from shared.store.stats import snapshot
from shared.store.store import Store


@pytest.fixture
def broker() -> StubBroker:
    return StubBroker("tasks")


@pytest.fixture
def accepter(broker: StubBroker, store: Store) -> Accepter:
    return Accepter(broker, store, registry, max_backlog=1000, backlog_cache_seconds=0)


@pytest.fixture
def processor(store: Store) -> Processor:
    return Processor(store, registry)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("not json", [{"field": "body"}]),
        ({"type": "nope"}, [{"field": "type"}]),
        ({"payload": {}}, [{"field": "type"}]),
        ({"type": "add", "payload": {"x": 1}}, [{"field": "payload.y", "message": "required"}]),
        ({"type": "add", "payload": {"x": 1, "y": "2"}}, [{"field": "payload.y"}]),
        (
            {"type": "add", "payload": {"x": 1, "y": 2, "z": 3}},
            [{"field": "payload.z", "message": "unknown field"}],
        ),
        ({"type": "add", "payload": [1, 2]}, [{"field": "payload"}]),
        ({"type": "sleep", "payload": {"seconds": 3600}}, [{"field": "payload.seconds"}]),
        ({"type": "echo", "extra": 1}, [{"field": "extra"}]),
        (42, [{"field": "task"}]),
        ([], [{"field": "body"}]),
        ([{"type": "echo"}] * 1001, [{"field": "body"}]),
        (
            [{"type": "echo"}, {"type": "add", "payload": {"x": 1}}, {"type": "nope"}],
            [{"index": 1, "field": "payload.y"}, {"index": 2, "field": "type"}],
        ),
    ],
)
def test_validation_names_each_bad_index_and_field(document: Any, expected: list[dict[str, Any]]) -> None:
    raw = document.encode() if isinstance(document, str) else body(document)
    with pytest.raises(ValidationError) as caught:
        parse_submission(raw, registry)
    found = [e.as_dict() for e in caught.value.errors]
    assert len(found) == len(expected)
    for error, wanted in zip(found, expected, strict=True):
        assert {k: error.get(k) for k in wanted} == wanted


def test_valid_submission_fills_defaults() -> None:
    submission = parse_submission(
        body([{"type": "cpu"}, {"type": "add", "payload": {"x": 1, "y": 2}}]), registry
    )
    assert submission.is_batch
    assert [e.type for e in submission.envelopes] == ["cpu", "add"]
    assert submission.envelopes[0].payload == {"iterations": 100_000, "data": "tasklane"}
    assert len({e.id for e in submission.envelopes}) == 2


async def test_nothing_is_sent_when_one_task_is_bad(accepter: Accepter, broker: StubBroker) -> None:
    with pytest.raises(ValidationError):
        await accepter.accept(body([{"type": "echo"}, {"type": "nope"}]))
    assert broker.messages == []


async def test_accepted_tasks_are_queued_and_counted(
    accepter: Accepter, broker: StubBroker, store: Store
) -> None:
    accepted = await accepter.accept(body([{"type": "echo", "payload": {"message": i}} for i in range(3)]))
    assert [m.id for m in broker.messages] == accepted.ids
    for task_id in accepted.ids:
        status = await store.task(task_id)
        assert status is not None
        assert status["status"] == "queued"
    stats = await snapshot(store)
    assert stats["totals"]["accepted"] == 3
    assert stats["per_type"]["echo"]["accepted"] == 3


async def test_refused_send_leaves_no_trace(accepter: Accepter, broker: StubBroker, store: Store) -> None:
    broker.fail_next = True
    with pytest.raises(BrokerError):
        await accepter.accept(body({"type": "echo"}), idempotency_key="k1")
    assert (await snapshot(store))["totals"]["accepted"] == 0
    # The key was released: the client's retry is sent, not answered from the failed attempt
    retried = await accepter.accept(body({"type": "echo"}), idempotency_key="k1")
    assert not retried.replayed
    assert len(broker.messages) == 1


async def test_idempotency_key_returns_the_same_ids(accepter: Accepter, broker: StubBroker) -> None:
    first = await accepter.accept(body([{"type": "echo"}, {"type": "echo"}]), idempotency_key="order-7")
    again = await accepter.accept(body([{"type": "echo"}, {"type": "echo"}]), idempotency_key="order-7")
    other = await accepter.accept(body({"type": "echo"}), idempotency_key="order-8")
    assert again.ids == first.ids
    assert again.replayed
    assert other.ids != first.ids
    assert len(broker.messages) == 3


async def test_backpressure_refuses_and_sends_nothing(
    accepter: Accepter, broker: StubBroker, store: Store
) -> None:
    await store.save_backlog(Backlog("tasks", active=1001, dead_lettered=0))
    with pytest.raises(BackpressureError) as caught:
        await accepter.accept(body({"type": "echo"}))
    assert caught.value.retry_after > 0
    assert broker.messages == []
    await store.save_backlog(Backlog("tasks", active=10, dead_lettered=0))
    await accepter.accept(body({"type": "echo"}))
    assert len(broker.messages) == 1


async def _submit_and_process(accepter: Accepter, broker: StubBroker, processor: Processor, task: Any) -> str:
    accepted = await accepter.accept(body(task))
    await processor.process([broker.take().body])
    return accepted.ids[0]


async def test_processing_records_result_and_figures(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    task_id = await _submit_and_process(
        accepter, broker, processor, {"type": "add", "payload": {"x": 2, "y": 3}}
    )
    status = await store.task(task_id)
    assert status is not None
    assert status["status"] == "succeeded"
    assert msgspec.json.decode(status["result"]) == 5.0
    stats = await snapshot(store)
    assert stats["totals"]["processed"] == 1
    assert stats["throughput"]["processed"] == 1
    assert stats["latency_seconds"]["processing"]["p50"] is not None


async def test_redelivered_success_is_not_run_again(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    accepted = await accepter.accept(body({"type": "echo", "payload": {"message": "once"}}))
    message = broker.take().body
    await processor.process([message])
    await processor.process([message])  # the broker redelivers (e.g. the ack was lost)
    status = await store.task(accepted.ids[0])
    assert status is not None
    assert status["attempts"] == "1"
    assert (await snapshot(store))["totals"]["processed"] == 1


async def test_cache_hit_and_miss(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    task = {"type": "add", "payload": {"x": 20, "y": 22}}
    first = await _submit_and_process(accepter, broker, processor, task)
    second = await _submit_and_process(accepter, broker, processor, task)
    other = await _submit_and_process(
        accepter, broker, processor, {"type": "add", "payload": {"x": 1, "y": 1}}
    )
    cache = (await snapshot(store))["cache"]
    assert (cache["hits"], cache["misses"], cache["keys"]) == (1, 2, 2)
    for task_id in (first, second, other):
        status = await store.task(task_id)
        assert status is not None
        assert status["status"] == "succeeded"


async def test_failing_task_is_dead_lettered_after_its_attempts(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    accepted = await accepter.accept(body({"type": "fail", "payload": {"reason": "boom"}}))
    message = broker.take().body
    max_attempts = registry.get("fail").max_attempts  # type: ignore[union-attr]
    statuses = []
    for _ in range(max_attempts + 1):  # the broker keeps redelivering until its own limit
        with pytest.raises(TaskFailedError):
            await processor.process([message])
        found = await store.task(accepted.ids[0])
        assert found is not None
        statuses.append(found["status"])
    assert statuses == ["failed"] * (max_attempts - 1) + ["dead-lettered", "dead-lettered"]
    assert found["attempts"] == str(max_attempts)  # the handler did not run after the last attempt
    assert "boom" in found["error"]
    assert (await snapshot(store))["totals"]["dead_lettered"] == 1


async def test_undecodable_message_raises_and_keeps_the_reason(processor: Processor, store: Store) -> None:
    with pytest.raises(DecodeError):
        await processor.process([b"\x00not json"], ["message-1"])
    reasons = await store.client.lrange("tl:dead-letters", 0, -1)
    assert json.loads(reasons[0])["message_id"] == "message-1"
    assert (await snapshot(store))["totals"]["undecodable"] == 1


async def test_batch_succeeds_and_fails_as_one(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    accepted = await accepter.accept(body([{"type": "echo"}, {"type": "fail"}, {"type": "echo"}]))
    messages = [broker.take().body for _ in range(3)]
    with pytest.raises(TaskFailedError):
        await processor.process(messages)
    statuses = [(await store.task(i) or {}).get("status") for i in accepted.ids]
    assert statuses == ["succeeded", "failed", "succeeded"]
    # Redelivery of the whole batch runs only the failed one again
    with pytest.raises(TaskFailedError):
        await processor.process(messages)
    attempts = [(await store.task(i) or {}).get("attempts") for i in accepted.ids]
    assert attempts == ["1", "2", "1"]


async def test_handler_timeout_is_a_failure(store: Store) -> None:
    envelope = TaskEnvelope("t-timeout", "sleep", {"seconds": 0.5}, 0.0)
    from dataclasses import replace

    quick = Processor(store, registry)
    sleep_type = registry.get("sleep")
    assert sleep_type is not None
    quick._registry = type("R", (), {"get": staticmethod(lambda name: replace(sleep_type, timeout=0.05))})()  # type: ignore[assignment]
    with pytest.raises(TaskFailedError, match=r"longer than 0\.05s"):
        await quick.process([envelope.encode()])


async def test_writes_survive_valkey_forgetting_its_scripts(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Given Valkey restarted (its script cache is empty)
    await store.client.script_flush()
    # When tasks are accepted and processed, Then the scripts are loaded again and nothing is lost
    task_id = await _submit_and_process(
        accepter, broker, processor, {"type": "echo", "payload": {"message": 1}}
    )
    status = await store.task(task_id)
    assert status is not None
    assert status["status"] == "succeeded"


async def test_concurrent_invocations_each_get_their_own_answer(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Writes of concurrent invocations share pipelines; each must still see its own result
    accepted = await accepter.accept(body([{"type": "add", "payload": {"x": i, "y": 1}} for i in range(40)]))
    messages = [broker.take().body for _ in range(40)]
    await asyncio.gather(*(processor.process([m]) for m in messages))
    results = [msgspec.json.decode((await store.task(i) or {})["result"]) for i in accepted.ids]
    assert results == [float(i + 1) for i in range(40)]
