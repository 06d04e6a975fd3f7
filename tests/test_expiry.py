"""Expiry: a task not started by ``expires_at`` (or ``expires_in`` seconds) is not run: status
``expired``, counted in stats. Real Valkey, the stub broker, a test clock."""

from __future__ import annotations

import json
from collections import Counter

import msgspec
import pytest

from shared.brokers.stub import StubBroker
from shared.errors import ValidationError
from shared.pipeline.delivery import Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import Processor
from shared.pipeline.registry import Registry
from shared.pipeline.submission import parse_submission
from shared.store.store import Store
from shared.tasks import registry as app_registry
from tests.waiting import Clock

NOW = 1_800_000_000.0


class Payload(msgspec.Struct):
    pass


def counting(runs: Counter[str]) -> Registry:
    registry = Registry()

    @registry.task("count")
    async def count(payload: Payload) -> None:
        runs["count"] += 1

    @registry.task("flaky", max_attempts=3, backoff=5.0, backoff_max=5.0)
    async def flaky(payload: Payload) -> None:
        runs["flaky"] += 1
        raise RuntimeError("not yet")

    return registry


def body(item: dict[str, object]) -> bytes:
    return json.dumps(item).encode()


def test_expires_in_and_expires_at_name_when_a_task_may_no_longer_start() -> None:
    (first,) = parse_submission(body({"type": "echo", "expires_in": 30}), app_registry, now=NOW).envelopes
    at = "2027-01-15T08:00:30+00:00"
    (second,) = parse_submission(body({"type": "echo", "expires_at": at}), app_registry, now=NOW).envelopes
    assert first.expires_at == NOW + 30
    assert second.expires_at == 1_800_000_030.0


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"type": "echo", "expires_in": 0}, "expires_in", "seconds from 1"),
        ({"type": "echo", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "has passed"),
        ({"type": "echo", "expires_in": 5, "expires_at": "2030-01-01T00:00:00Z"}, "expires_in", "not both"),
        ({"type": "echo", "delay": 60, "expires_in": 30}, "expires_at", "after the task is due"),
    ],
)
def test_a_bad_expiry_is_a_400_naming_the_field(item: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_submission(body(item), app_registry, now=NOW)
    (error,) = raised.value.errors
    assert (error.field, words in error.message) == (field, True)


async def test_a_task_past_its_expiry_is_not_run_and_counts_as_expired(store: Store) -> None:
    # Given a task accepted with a one-minute expiry, delivered two minutes later
    runs: Counter[str] = Counter()
    clock = Clock()
    envelope = TaskEnvelope("t-late", "count", {}, clock.now, expires_at=clock.now + 60)
    await store.record_accepted([envelope])
    processor = Processor(store, StubBroker(), counting(runs), Hooks(), clock=clock)
    clock.reach(clock.now + 120)

    # When it is delivered
    (decision,) = await processor.process([Delivery(envelope.encode(), "t-late")])

    # Then it is settled without running, expired, and counted
    assert (decision.verdict, decision.reason) == (Verdict.COMPLETED, "expired")
    assert runs["count"] == 0
    status = await store.task("t-late")
    assert status is not None
    assert (status["status"], status["attempts"]) == ("expired", "0")
    stats = await store.stats()
    assert stats["totals"]["expired"] == 1
    assert stats["per_type"]["count"]["expired"] == 1


async def test_a_task_that_started_in_time_keeps_its_later_attempts(store: Store) -> None:
    # Given a failing task whose first attempt ran before its expiry
    runs: Counter[str] = Counter()
    clock = Clock()
    broker = StubBroker()
    envelope = TaskEnvelope("t-retry", "flaky", {}, clock.now, expires_at=clock.now + 3)
    processor = Processor(store, broker, counting(runs), Hooks(), clock=clock)
    (first,) = await processor.process([Delivery(envelope.encode(), "t-retry")])
    assert first.verdict is Verdict.RETRIED

    # When its next attempt arrives after the expiry (its backoff is 2.5 to 5 s)
    again = broker.take()
    assert again.scheduled_at is not None
    clock.reach(again.scheduled_at.timestamp())
    (second,) = await processor.process([Delivery(again.body, again.id)])

    # Then it runs: expiry stops a task from starting, not from finishing its attempts
    assert second.verdict is Verdict.RETRIED
    assert runs["flaky"] == 2
