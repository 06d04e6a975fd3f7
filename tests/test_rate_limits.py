"""Per-caller rate limits: a token bucket (GCRA) per caller in Valkey, atomic across instances; over
it, 429 with Retry-After and the IETF RateLimit fields, and nothing is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shared.brokers.stub import StubBroker
from shared.errors import RateLimitedError, ValidationError
from shared.pipeline.accept import Accepter
from shared.pipeline.hooks import Hooks
from shared.store.store import Store
from shared.tasks import registry
from tests.conftest import require_service
from tests.hosting import RunningHost, start_host

ONE = json.dumps({"type": "echo"}).encode()


def accepter(store: Store, broker: StubBroker, rate: float, burst: int) -> Accepter:
    return Accepter(
        broker,
        store,
        registry,
        Hooks(),
        max_backlog=10_000,
        rate_limit=rate,
        rate_burst=burst,
    )


async def test_a_caller_gets_its_burst_then_waits_its_rate_and_others_are_not_held(store: Store) -> None:
    # Given 5 tasks a second, 5 at once
    broker = StubBroker()
    limited = accepter(store, broker, rate=5, burst=5)

    # When one caller submits 6 tasks at once, one by one
    for _ in range(5):
        await limited.accept(ONE, caller="alice")
    with pytest.raises(RateLimitedError) as raised:
        await limited.accept(ONE, caller="alice")

    # Then the sixth waits about one task's interval, and was not sent
    assert 0 < raised.value.retry_after <= 0.21
    assert len(broker.messages) == 5
    # And another caller still has its own burst
    await limited.accept(ONE, caller="bob")
    assert len(broker.messages) == 6


async def test_a_batch_counts_each_task_and_one_larger_than_the_burst_is_a_400(store: Store) -> None:
    broker = StubBroker()
    limited = accepter(store, broker, rate=1, burst=3)
    batch = json.dumps([{"type": "echo"}] * 3).encode()

    await limited.accept(batch, caller="carol")
    with pytest.raises(RateLimitedError):
        await limited.accept(ONE, caller="carol")
    with pytest.raises(ValidationError, match="at most 3 at once"):
        await limited.accept(json.dumps([{"type": "echo"}] * 4).encode(), caller="dave")
    assert len(broker.messages) == 3


@pytest.fixture(scope="module")
def limited_host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("valkey")
    running = start_host(settings={"TASKS_RATE_LIMIT": "0.5", "TASKS_RATE_BURST": "2"})
    yield running
    running.stop()


def test_over_the_limit_the_api_answers_429_with_the_ratelimit_fields(limited_host: RunningHost) -> None:
    with limited_host.client() as http:
        answers = [http.post("/api/tasks", json={"type": "echo"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    refused = answers[2]
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["ratelimit-policy"] == '"caller";q=2;w=4'
    assert refused.headers["ratelimit"].startswith('"caller";r=0;t=')
    assert refused.json()["error"] == "over this caller's rate limit"
