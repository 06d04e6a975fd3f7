"""The processor decides each delivery on its own: completed, re-sent, dead-lettered or handed back.

Real Valkey (the ``store`` fixture), the in-memory stub broker, and a registry of small task types.
"""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from shared.brokers.stub import StubBroker
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON, Processor
from shared.pipeline.registry import PermanentError, Registry
from shared.store.store import Store
from tests.waiting import Clock

ATTEMPTS = 3


class Payload(msgspec.Struct):
    value: int = 0


def small_registry(runs: Counter[str]) -> Registry:
    """``ok`` succeeds, ``flaky`` always fails (retryable), ``broken`` fails permanently; ``runs``
    counts each handler call by the payload's value."""
    registry = Registry()

    @registry.task("ok", max_attempts=ATTEMPTS)
    async def ok(payload: Payload) -> int:
        runs[f"ok-{payload.value}"] += 1
        return payload.value * 2

    @registry.task("flaky", max_attempts=ATTEMPTS)
    async def flaky(payload: Payload) -> None:
        runs["flaky"] += 1
        raise RuntimeError("try again")

    @registry.task("broken", max_attempts=ATTEMPTS)
    async def broken(payload: Payload) -> None:
        runs["broken"] += 1
        raise PermanentError("cannot ever work")

    return registry


@pytest.fixture
def broker() -> StubBroker:
    return StubBroker("tasks")


@pytest.fixture
def processor(store: Store, broker: StubBroker, runs: Counter[str], clock: Clock) -> Processor:
    return Processor(store, broker, small_registry(runs), Hooks(), clock=clock)


def task(task_id: str, task_type: str, value: int = 0) -> Delivery:
    envelope = TaskEnvelope(task_id, task_type, {"value": value}, 0.0)
    return Delivery(envelope.encode(), task_id)


async def test_an_undecodable_message_is_dead_lettered_alone(
    processor: Processor, broker: StubBroker, store: Store, runs: Counter[str]
) -> None:
    # Given a batch with a message that is not a task between two good tasks
    garbage = Delivery(b"\x00not a task", "garbage-1")
    batch = [task("t-1", "ok", 1), garbage, task("t-2", "ok", 2)]
    # When it is processed
    decisions = await processor.process(batch)
    # Then each delivery has its own decision, in order
    assert [d.verdict for d in decisions] == [Verdict.COMPLETED, Verdict.DEAD_LETTERED, Verdict.COMPLETED]
    assert [d.delivery for d in decisions] == batch
    # And both good tasks ran once and succeeded
    assert runs == {"ok-1": 1, "ok-2": 1}
    for task_id, result in (("t-1", 2), ("t-2", 4)):
        status = await store.task(task_id)
        assert status is not None
        assert (status["status"], msgspec.json.decode(status["result"])) == ("succeeded", result)
    # And only the undecodable message went to the dead-letter queue, with its reason
    (dead,) = broker.dead_letters
    assert (dead.id, dead.body) == ("garbage-1", garbage.body)
    assert dead.headers[DEAD_LETTER_REASON] == "Undecodable"
    assert broker.messages == []


async def test_a_permanent_error_is_dead_lettered_on_the_first_attempt(
    processor: Processor, broker: StubBroker, store: Store, runs: Counter[str]
) -> None:
    # Given a task whose handler raises PermanentError, with attempts to spare
    # When its first attempt runs
    (decision,) = await processor.process([task("t-perm", "broken")])
    # Then it is dead-lettered at once with the error, and not re-sent
    assert decision.verdict is Verdict.DEAD_LETTERED
    assert "cannot ever work" in decision.reason
    assert runs["broken"] == 1
    assert broker.messages == []
    (dead,) = broker.dead_letters
    assert dead.id == "t-perm"
    assert dead.headers[DEAD_LETTER_REASON] == "PermanentError"
    assert "PermanentError: cannot ever work" in dead.headers[DEAD_LETTER_DESCRIPTION]
    status = await store.task("t-perm")
    assert status is not None
    assert (status["status"], status["attempts"]) == ("dead-lettered", "1")


async def test_a_failing_task_is_retried_while_it_has_attempts_then_dead_lettered(
    processor: Processor, broker: StubBroker, store: Store, runs: Counter[str], clock: Clock
) -> None:
    # Given a task whose handler fails every time
    delivery = task("t-flaky", "flaky")
    # When its first attempt runs
    (first,) = await processor.process([delivery])
    # Then it is re-sent for the next attempt (same task, a message id of its own) and not dead-lettered
    assert first.verdict is Verdict.RETRIED
    assert "try again" in first.reason
    (resent,) = broker.messages
    assert resent.id == "t-flaky.2"
    assert TaskEnvelope.decode(resent.body).id == "t-flaky"
    assert broker.dead_letters == []
    assert (await store.task("t-flaky") or {}).get("status") == "failed"
    # When the re-sent messages are processed until the last attempt
    verdicts = []
    for _ in range(ATTEMPTS - 1):
        message = broker.take()
        # (the broker hands a re-sent attempt over once its backoff has passed)
        clock.reach(message.scheduled_at.timestamp() if message.scheduled_at else None)
        (decision,) = await processor.process([Delivery(message.body, message.id)])
        verdicts.append(decision.verdict)
    # Then only the last attempt is dead-lettered, and nothing more is re-sent
    assert verdicts == [Verdict.RETRIED] * (ATTEMPTS - 2) + [Verdict.DEAD_LETTERED]
    assert runs["flaky"] == ATTEMPTS
    assert broker.messages == []
    (dead,) = broker.dead_letters
    assert (dead.id, dead.headers[DEAD_LETTER_REASON]) == ("t-flaky", "MaxAttemptsExceeded")
    status = await store.task("t-flaky")
    assert status is not None
    assert (status["status"], status["attempts"]) == ("dead-lettered", str(ATTEMPTS))


@pytest.mark.parametrize(
    "delivery",
    [task("t-perm", "broken"), Delivery(b"\x00not a task", "garbage-1")],
    ids=["task out of attempts", "undecodable"],
)
async def test_a_refused_dead_letter_hands_the_delivery_back(
    store: Store, broker: StubBroker, runs: Counter[str], delivery: Delivery
) -> None:
    # Given a broker that refuses the next send, and a processor with no patience for it
    broker.fail_next = True
    processor = Processor(store, broker, small_registry(runs), Hooks(), broker_patience=0)
    # When a delivery that must be dead-lettered is processed
    (decision,) = await processor.process([delivery])
    # Then it is handed back to its trigger for redelivery, and nothing reached the dead-letter queue
    assert decision.verdict is Verdict.REDELIVER
    assert not decision.settled
    assert "refuse" in decision.reason
    assert broker.dead_letters == []


async def test_a_broker_that_refuses_once_is_tried_again_and_nothing_is_handed_back(
    processor: Processor, broker: StubBroker
) -> None:
    # Given a broker that refuses the next send only
    broker.fail_next = True
    # When a task out of attempts is processed
    (decision,) = await processor.process([task("t-perm-2", "broken")])
    # Then the dead letter went through on a second try
    assert decision.verdict is Verdict.DEAD_LETTERED
    (dead,) = broker.dead_letters
    assert TaskEnvelope.decode(dead.body).id == "t-perm-2"
