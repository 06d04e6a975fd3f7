"""Accepting and processing tasks against real Valkey (the broker is the in-memory stub here;
the RabbitMQ path is covered end to end through the host in test_end_to_end.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from shared.brokers.stub import StubBroker
from shared.errors import BackpressureError, BrokerError, ValidationError
from shared.pipeline.accept import FAST_FAIL_SECONDS, Accepter
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, Processor
from shared.pipeline.registry import Registry
from shared.pipeline.submission import parse_submission
from shared.store.store import Store
from shared.tasks import registry
from tests.waiting import Clock


@pytest.fixture
def broker() -> StubBroker:
    return StubBroker("tasks")


@pytest.fixture
def accepter(broker: StubBroker, store: Store) -> Accepter:
    return Accepter(broker, store, registry, Hooks(), max_backlog=1000)


@pytest.fixture
def processor(broker: StubBroker, store: Store, clock: Clock) -> Processor:
    return Processor(store, broker, registry, Hooks(), clock=clock)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def delivered(broker: StubBroker, clock: Clock | None = None) -> Delivery:
    """The oldest message on the stub queue, taken off it as the trigger would deliver it: a scheduled
    one when it is due (``clock`` moves there)."""
    message = broker.take()
    if clock is not None and message.scheduled_at is not None:
        clock.reach(message.scheduled_at.timestamp())
    return Delivery(message.body, message.id)


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
    stats = await store.stats()
    assert stats["totals"]["accepted"] == 3
    assert stats["per_type"]["echo"]["accepted"] == 3


async def test_refused_send_leaves_no_trace(accepter: Accepter, broker: StubBroker, store: Store) -> None:
    broker.fail_next = True
    with pytest.raises(BrokerError):
        await accepter.accept(body({"type": "echo"}), idempotency_key="k1")
    assert (await store.stats())["totals"]["accepted"] == 0
    # The key was released: the client's retry (after the second in which submissions fail fast) is
    # sent, not answered from the failed attempt
    await asyncio.sleep(FAST_FAIL_SECONDS + 0.05)
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
    # Given the broker counts 1,000 messages: the timer's reconciliation takes the live backlog there
    await store.reconcile_backlog(1000)
    with pytest.raises(BackpressureError) as caught:
        await accepter.accept(body({"type": "echo"}))
    assert (caught.value.backlog, caught.value.limit) == (1000, 1000)
    assert caught.value.retry_after > 0
    assert broker.messages == []
    # When the broker's count falls, the backlog is what Valkey holds unfinished: room again
    await store.reconcile_backlog(10)
    await accepter.accept(body({"type": "echo"}))
    assert len(broker.messages) == 1


async def _submit_and_process(accepter: Accepter, broker: StubBroker, processor: Processor, task: Any) -> str:
    accepted = await accepter.accept(body(task))
    (decision,) = await processor.process([delivered(broker)])
    assert decision.verdict is Verdict.COMPLETED
    return accepted.ids[0]


async def test_processing_records_result_and_figures(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Given an accepted task, When it is processed
    task_id = await _submit_and_process(
        accepter, broker, processor, {"type": "add", "payload": {"x": 2, "y": 3}}
    )
    # Then its result and the figures are in Valkey
    status = await store.task(task_id)
    assert status is not None
    assert status["status"] == "succeeded"
    assert msgspec.json.decode(status["result"]) == 5.0
    stats = await store.stats()
    assert stats["totals"]["processed"] == 1
    assert stats["throughput"]["processed"] == 1
    assert stats["latency_seconds"]["processing"]["p50"] is not None


async def test_redelivered_success_is_not_run_again(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Given a task that was processed once
    accepted = await accepter.accept(body({"type": "echo", "payload": {"message": "once"}}))
    message = delivered(broker)
    await processor.process([message])
    # When the broker redelivers it (e.g. the ack was lost)
    (again,) = await processor.process([message])
    # Then it is settled without running again
    assert again.verdict is Verdict.COMPLETED
    status = await store.task(accepted.ids[0])
    assert status is not None
    assert status["attempts"] == "1"
    assert (await store.stats())["totals"]["processed"] == 1


async def test_cache_hit_and_miss(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Given a cached task type, When the same payload is processed twice and another once
    task = {"type": "add", "payload": {"x": 20, "y": 22}}
    first = await _submit_and_process(accepter, broker, processor, task)
    second = await _submit_and_process(accepter, broker, processor, task)
    other = await _submit_and_process(
        accepter, broker, processor, {"type": "add", "payload": {"x": 1, "y": 1}}
    )
    # Then one hit, two misses, two cached keys, and every task succeeded
    cache = (await store.stats())["cache"]
    assert (cache["hits"], cache["misses"], cache["keys"]) == (1, 2, 2)
    for task_id in (first, second, other):
        status = await store.task(task_id)
        assert status is not None
        assert status["status"] == "succeeded"


async def test_failing_task_is_retried_then_dead_lettered_after_its_attempts(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store, clock: Clock
) -> None:
    # Given an accepted task whose handler always fails
    accepted = await accepter.accept(body({"type": "fail", "payload": {"reason": "boom"}}))
    task_id = accepted.ids[0]
    max_attempts = registry.get("fail").max_attempts  # type: ignore[union-attr]
    verdicts, statuses, resent = [], [], []
    message = delivered(broker)
    # When each attempt's message is processed in turn
    for attempt in range(1, max_attempts + 1):
        (decision,) = await processor.process([message])
        verdicts.append(decision.verdict)
        found = await store.task(task_id)
        assert found is not None
        statuses.append(found["status"])
        if attempt < max_attempts:
            message = delivered(broker, clock)
            resent.append(message.message_id)
    # Then each failed attempt with attempts left was re-sent under its next attempt's id
    assert verdicts == [Verdict.RETRIED] * (max_attempts - 1) + [Verdict.DEAD_LETTERED]
    assert statuses == ["failed"] * (max_attempts - 1) + ["dead-lettered"]
    assert resent == [f"{task_id}.{n}" for n in range(2, max_attempts + 1)]
    assert broker.messages == []
    # And the last went to the dead-letter queue with its reason
    (dead,) = broker.dead_letters
    assert dead.id == task_id
    assert dead.headers[DEAD_LETTER_REASON] == "MaxAttemptsExceeded"
    assert "boom" in dead.headers[DEAD_LETTER_DESCRIPTION]
    final = await store.task(task_id)
    assert final is not None
    assert final["attempts"] == str(max_attempts)
    assert "boom" in final["error"]
    assert (await store.stats())["totals"]["dead_lettered"] == 1
    # And a redelivery of the last message is dropped without running the handler again
    (late,) = await processor.process([message])
    assert late.verdict is Verdict.COMPLETED
    assert (await store.task(task_id) or {})["attempts"] == str(max_attempts)
    assert len(broker.dead_letters) == 1


async def test_undecodable_message_is_dead_lettered_and_keeps_the_reason(
    broker: StubBroker, processor: Processor, store: Store
) -> None:
    # When a message that is not a task arrives
    (decision,) = await processor.process([Delivery(b"\x00not json", "message-1")])
    # Then it is dead-lettered through the broker, and Valkey keeps the reason
    assert decision.verdict is Verdict.DEAD_LETTERED
    (dead,) = broker.dead_letters
    assert (dead.id, dead.headers[DEAD_LETTER_REASON]) == ("message-1", "Undecodable")
    reasons = await store.client.lrange("tl:dead-letters", 0, -1)  # type: ignore[misc]
    assert json.loads(reasons[0])["message_id"] == "message-1"
    assert (await store.stats())["totals"]["undecodable"] == 1


async def test_each_task_of_a_batch_is_decided_on_its_own(
    accepter: Accepter, broker: StubBroker, processor: Processor, store: Store
) -> None:
    # Given a batch with a failing task between two good ones
    accepted = await accepter.accept(body([{"type": "echo"}, {"type": "fail"}, {"type": "echo"}]))
    messages = [delivered(broker) for _ in range(3)]
    # When it is processed
    decisions = await processor.process(messages)
    # Then the good ones complete and only the failing one is re-sent for its second attempt
    assert [d.verdict for d in decisions] == [Verdict.COMPLETED, Verdict.RETRIED, Verdict.COMPLETED]
    statuses = [(await store.task(i) or {}).get("status") for i in accepted.ids]
    assert statuses == ["succeeded", "failed", "succeeded"]
    assert [m.id for m in broker.messages] == [f"{accepted.ids[1]}.2"]
    # And a redelivery of the whole batch runs only the failed one again
    await processor.process(messages)
    attempts = [(await store.task(i) or {}).get("attempts") for i in accepted.ids]
    assert attempts == ["1", "2", "1"]


class SleepPayload(msgspec.Struct):
    seconds: float


async def test_handler_timeout_is_a_failure(broker: StubBroker, store: Store) -> None:
    # Given a task type whose handler outlives its timeout
    quick = Registry()

    @quick.task("sleep", timeout=0.05)
    async def sleep(payload: SleepPayload) -> None:
        await asyncio.sleep(payload.seconds)

    envelope = TaskEnvelope("t-timeout", "sleep", {"seconds": 0.5}, 0.0)
    # When it is processed
    (decision,) = await Processor(store, broker, quick, Hooks()).process([Delivery(envelope.encode())])
    # Then the attempt failed with the timeout as its reason, and another attempt was sent
    assert decision.verdict is Verdict.RETRIED
    assert "longer than 0.05s" in decision.reason
    assert [m.id for m in broker.messages] == ["t-timeout.2"]


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
    # Given 40 tasks, When each is processed by its own concurrent invocation
    accepted = await accepter.accept(body([{"type": "add", "payload": {"x": i, "y": 1}} for i in range(40)]))
    messages = [delivered(broker) for _ in range(40)]
    await asyncio.gather(*(processor.process([m]) for m in messages))
    # Then writes share pipelines, yet each task has its own result
    results = [msgspec.json.decode((await store.task(i) or {})["result"]) for i in accepted.ids]
    assert results == [float(i + 1) for i in range(40)]


async def test_a_start_asked_again_with_its_token_is_the_same_attempt(store: Store) -> None:
    # Given a queued task whose start Valkey ran, but whose answer was lost with the connection
    broker = StubBroker()
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=1000)
    (task_id,) = (await accepter.accept(body({"type": "echo"}))).ids
    envelope = TaskEnvelope.decode(broker.take().body)
    (first,) = await store.begin([(envelope, None)], token="start-1")
    # When the processor asks again with the same token, it is still the first attempt
    (again,) = await store.begin([(envelope, None)], token="start-1")
    assert (first.attempts, again.attempts) == (1, 1)
    # while another delivery's start is another attempt
    (other,) = await store.begin([(envelope, None)], token="start-2")
    assert other.attempts == 2
    assert (await store.task(task_id) or {})["attempts"] == "2"
