"""The processor keeps to each type's limits: a delivery over them waits its turn or is put off, is
never begun, failed or counted as an attempt, and runs later.

Real Valkey (the ``store`` fixture), the in-memory stub broker, and small limited task types.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

import msgspec
import pytest

from shared.brokers.stub import StubBroker
from shared.errors import StoreError
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import LIMITS_HOLD, Processor
from shared.pipeline.registry import Registry, TaskType
from shared.store.keys import COUNTERS
from shared.store.limits import Admission, TypeLimits, running_key
from shared.store.store import Store
from tests.waiting import Clock


class Payload(msgspec.Struct):
    value: int = 0


def limited_registry(runs: Counter[str]) -> Registry:
    """``hourly`` may start once a minute; ``quick`` ten a second; ``single`` one at a time; ``free``
    has no limits. ``runs`` counts each handler call by task type."""
    registry = Registry()

    @registry.task("hourly", rate_limit="1/m")
    async def hourly(payload: Payload) -> int:
        runs["hourly"] += 1
        return payload.value

    @registry.task("quick", rate_limit="10/s")
    async def quick(payload: Payload) -> int:
        runs["quick"] += 1
        return payload.value

    @registry.task("single", concurrency=1)
    async def single(payload: Payload) -> int:
        runs["single"] += 1
        return payload.value

    @registry.task("free")
    async def free(payload: Payload) -> int:
        runs["free"] += 1
        return payload.value

    return registry


@pytest.fixture
def broker() -> StubBroker:
    return StubBroker("tasks")


@pytest.fixture
def processor(store: Store, broker: StubBroker, runs: Counter[str], clock: Clock) -> Processor:
    limits = TypeLimits(store.client, clock=clock)
    return Processor(store, broker, limited_registry(runs), Hooks(), clock=clock, limits=limits)


async def accepted(store: Store, task_id: str, task_type: str) -> Delivery:
    """A task as the HTTP function leaves it: recorded as queued, and its message."""
    envelope = TaskEnvelope(task_id, task_type, {"value": 1}, time.time())
    await store.record_accepted([envelope])
    return Delivery(envelope.encode(), task_id)


async def test_a_delivery_over_the_rate_is_put_off_not_begun_and_runs_later(
    processor: Processor, broker: StubBroker, store: Store, runs: Counter[str], clock: Clock
) -> None:
    # Given a type that may start once a minute, which just started once
    first = await accepted(store, "t-1", "hourly")
    assert [d.verdict for d in await processor.process([first])] == [Verdict.COMPLETED]
    # When another of its tasks is delivered
    second = await accepted(store, "t-2", "hourly")
    (decision,) = await processor.process([second])
    # Then the delivery is put off, not run, failed or retried
    assert decision.verdict is Verdict.DEFERRED
    assert runs["hourly"] == 1
    # And the task was never begun: still queued, no attempt counted
    status = await store.task("t-2")
    assert status is not None
    assert (status["status"], status["attempts"]) == ("queued", "0")
    # And it comes back when its turn is near (within the in-process hold), counted as throttled
    (later,) = broker.messages
    assert later.scheduled_at is not None
    assert later.scheduled_at.timestamp() == pytest.approx(clock.now + 60 - LIMITS_HOLD, abs=0.01)
    counters = await store.client.hgetall(COUNTERS)
    assert (counters[b"throttled"], counters[b"throttled:hourly"]) == (b"1", b"1")

    # When the broker hands it back then, and its turn has come
    broker.take()
    clock.reach(later.scheduled_at.timestamp() + LIMITS_HOLD)
    (again,) = await processor.process([Delivery(later.body, later.id)])
    # Then it runs, on its first attempt
    assert again.verdict is Verdict.COMPLETED
    assert runs["hourly"] == 2
    status = await store.task("t-2")
    assert status is not None
    assert (status["status"], status["attempts"]) == ("succeeded", "1")


async def test_a_put_off_delivery_back_early_waits_without_asking_the_limits(
    processor: Processor, broker: StubBroker, store: Store, clock: Clock
) -> None:
    # Given a task put off because its type's minute was taken
    await processor.process([await accepted(store, "t-1", "hourly")])
    await processor.process([await accepted(store, "t-2", "hourly")])
    put_off = broker.take()
    # When a broker hands it back long before it is due (a RabbitMQ wait queue's tier is shorter)
    clock.now += 10
    (decision,) = await processor.process([Delivery(put_off.body, put_off.id)])
    # Then it is put off again to the same time, and not counted as throttled twice
    assert decision.verdict is Verdict.DEFERRED
    assert broker.take().scheduled_at == put_off.scheduled_at
    assert (await store.client.hgetall(COUNTERS))[b"throttled"] == b"1"


async def test_a_near_turn_is_waited_for_in_process_one_interval_apart(
    processor: Processor, broker: StubBroker, store: Store, runs: Counter[str]
) -> None:
    # Given a type that may start ten a second
    batch = [await accepted(store, f"t-{i}", "quick") for i in range(3)]
    # When three of its tasks arrive in one batch
    decisions = await processor.process(batch)
    # Then all three run now, none put off, each starting a tenth of a second after the one before
    assert [d.verdict for d in decisions] == [Verdict.COMPLETED] * 3
    assert broker.messages == []
    starts = []
    for i in range(3):
        status = await store.task(f"t-{i}")
        assert status is not None
        starts.append(float(status["started_at"]))
    gaps = [b - a for a, b in pairwise(starts)]
    assert all(gap >= 0.09 for gap in gaps), gaps


async def test_a_slot_is_given_back_once_the_outcome_is_recorded(
    processor: Processor, store: Store, runs: Counter[str]
) -> None:
    # Given a type that runs one at a time
    # When its tasks run one after the other
    for i in range(3):
        (decision,) = await processor.process([await accepted(store, f"t-{i}", "single")])
        assert decision.verdict is Verdict.COMPLETED
    # Then each found the slot free, and none holds it now
    assert runs["single"] == 3
    assert await store.client.zcard(running_key("single")) == 0


async def test_a_redelivery_of_finished_work_gives_its_slot_back(processor: Processor, store: Store) -> None:
    # Given a task of a one-at-a-time type that already succeeded
    delivery = await accepted(store, "t-1", "single")
    await processor.process([delivery])
    # When its message is delivered again
    (decision,) = await processor.process([delivery])
    # Then it is not run again, and the slot it was admitted to is free
    assert decision.verdict is Verdict.COMPLETED
    assert await store.client.zcard(running_key("single")) == 0


class Unreachable(TypeLimits):
    """Limits whose Valkey does not answer."""

    async def admit(self, tasks: Sequence[tuple[str, TaskType]], hold: float) -> list[Admission]:
        raise StoreError("Valkey is not reachable")


class ReleaseRefused(TypeLimits):
    """Limits whose release finds Valkey gone."""

    async def release(self, tasks: Sequence[tuple[str, TaskType]]) -> None:
        raise StoreError("Valkey went away")


async def test_a_failed_release_does_not_fail_the_delivery(
    store: Store, broker: StubBroker, runs: Counter[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a processor whose limits cannot give a slot back
    limits = ReleaseRefused(store.client)
    processor = Processor(store, broker, limited_registry(runs), Hooks(), limits=limits)
    # When a task of a one-at-a-time type runs
    with caplog.at_level(logging.WARNING, logger="shared.pipeline.process"):
        (decision,) = await processor.process([await accepted(store, "t-1", "single")])
    # Then it succeeded all the same, and the log says the slot will lapse on its own
    assert decision.verdict is Verdict.COMPLETED
    assert (await store.task("t-1") or {}).get("status") == "succeeded"
    assert any("t-1" in r.getMessage() and "lease" in r.getMessage() for r in caplog.records)


async def test_types_without_limits_do_not_touch_the_limits(
    store: Store, broker: StubBroker, runs: Counter[str]
) -> None:
    # Given limits that fail any call
    processor = Processor(store, broker, limited_registry(runs), Hooks(), limits=Unreachable(store.client))
    # When a task of a type without limits runs
    (decision,) = await processor.process([await accepted(store, "t-1", "free")])
    # Then it ran without asking
    assert decision.verdict is Verdict.COMPLETED
    assert runs["free"] == 1


async def test_while_the_limits_cannot_be_read_a_delivery_is_put_off_not_attempted(
    store: Store, broker: StubBroker, runs: Counter[str]
) -> None:
    # Given limits that Valkey does not answer, and no patience for it
    limits = Unreachable(store.client)
    processor = Processor(store, broker, limited_registry(runs), Hooks(), store_patience=0, limits=limits)
    # When a task of a limited type is delivered
    (decision,) = await processor.process([await accepted(store, "t-1", "single")])
    # Then it is put off until Valkey may be back, not run and no attempt
    assert decision.verdict is Verdict.DEFERRED
    assert runs["single"] == 0
    assert [TaskEnvelope.decode(m.body).id for m in broker.messages] == ["t-1"]
    assert (await store.task("t-1") or {}).get("attempts") == "0"
