"""A backlog limit that holds: admission counts unfinished tasks live, in the same Valkey script that
records them, so a fast-growing backlog never passes ``TASKS_MAX_BACKLOG`` by more than one batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import valkey

from shared.brokers.stub import StubBroker
from shared.errors import BackpressureError
from shared.pipeline.accept import Accepter
from shared.pipeline.delivery import Verdict
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import Processor
from shared.pipeline.root import Pipeline
from shared.pipeline.settings import RabbitMQConnection, Settings
from shared.secrets import Secret
from shared.store.store import Store
from shared.tasks import registry
from tests.conftest import private_valkey, require_service
from tests.hosting import RunningHost, start_host
from tests.waiting import Clock

LIMIT = 200
BATCH = 10
#: This test's own Valkey database: the live count is the app's, so no other host may share it.
DATABASE = 8


def one(task: dict[str, object]) -> bytes:
    return json.dumps(task).encode()


async def unfinished(store: Store) -> int:
    return int(await store.client.hget("tl:counters", "unfinished") or 0)


async def test_every_way_a_task_finishes_leaves_the_live_backlog_and_a_redrive_rejoins_it(
    store: Store,
) -> None:
    broker = StubBroker()
    clock = Clock()
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=LIMIT)
    processor = Processor(store, broker, registry, Hooks(), clock=clock)

    async def run_next() -> None:
        message = broker.take()
        await processor.process([_delivery(message.body)])

    # Five tasks: one succeeds, one fails for good, one is cancelled, one expires, one waits
    ids = (await accepter.accept(one({"type": "echo"}))).ids
    ids += (await accepter.accept(one({"type": "fail", "payload": {"permanent": True}}))).ids
    ids += (await accepter.accept(one({"type": "echo"}))).ids
    ids += (await accepter.accept(one({"type": "echo", "expires_in": 1}))).ids
    ids += (await accepter.accept(one({"type": "echo", "delay": 60}))).ids
    assert await unfinished(store) == 5
    await run_next()  # succeeds
    await run_next()  # dead-lettered
    assert await unfinished(store) == 3
    await store.cancel(ids[2])
    assert await unfinished(store) == 2
    broker.take()  # the cancelled task's message; dropped when it arrives
    clock.now += 2
    expiring = broker.take().body
    await processor.process([_delivery(expiring)])  # past its expiry: expired, never run
    assert await unfinished(store) == 1
    # and its redelivery is dropped, not run: no attempt
    (again,) = await processor.process([_delivery(expiring)])
    assert again.verdict is Verdict.COMPLETED
    assert (await store.task(ids[3]) or {}).get("attempts") == "0"
    assert await unfinished(store) == 1
    # A task that finished once does not leave twice: its redelivery changes nothing
    await processor.process([_delivery(broker.dead_letters[0].body)])
    assert await unfinished(store) == 1
    # A redriven task is unfinished again
    await processor_redrive(store, broker, ids[1])
    assert await unfinished(store) == 2


async def processor_redrive(store: Store, broker: StubBroker, task_id: str) -> None:
    from shared.pipeline.redrive import Redriver

    await Redriver(store, broker, Hooks()).retry(task_id)


def _delivery(body: bytes):  # type: ignore[no-untyped-def]
    from shared.pipeline.delivery import Delivery

    return Delivery(body, "m", 1)


async def test_admission_refuses_at_the_limit_and_names_the_count(store: Store) -> None:
    broker = StubBroker()
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=3)
    await accepter.accept(json.dumps([{"type": "echo"}] * 2).encode())
    # Under the limit, a batch goes in whole (the backlog may pass the limit by less than one batch)
    await accepter.accept(json.dumps([{"type": "echo"}] * 2).encode())
    with pytest.raises(BackpressureError) as raised:
        await accepter.accept(one({"type": "echo"}))
    assert (raised.value.backlog, raised.value.limit) == (4, 3)
    assert len(broker.messages) == 4


async def test_a_send_the_broker_refuses_leaves_the_backlog_and_the_listings(store: Store) -> None:
    broker = StubBroker()
    accepter = Accepter(broker, store, registry, Hooks(), max_backlog=LIMIT)
    broker.fail_next = True
    with pytest.raises(Exception, match="refuse"):
        await accepter.accept(one({"type": "echo"}))
    assert await unfinished(store) == 0
    assert (await store.tasks()).tasks == []


async def test_the_timer_reconciles_the_count_with_the_status_indexes_and_the_broker(store: Store) -> None:
    broker = StubBroker()
    pipeline = Pipeline(Settings(RabbitMQConnection(Secret("amqp://unused"))), registry, store, broker)
    await pipeline.accepter.accept(json.dumps([{"type": "echo"}] * 3).encode())
    # Drift: the count was lost (or written wrong)
    await store.client.hset("tl:counters", "unfinished", 50)
    await pipeline.snapshot_backlog()
    assert await unfinished(store) == 3  # what Valkey holds unfinished (the stub broker holds 3 too)
    # The broker holds more than Valkey knows of (Valkey lost writes): the broker's count wins
    broker.messages.extend(broker.messages * 3)
    await pipeline.snapshot_backlog()
    assert await unfinished(store) == 12


@pytest.fixture
def limited_host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    url = private_valkey(DATABASE)
    valkey.Valkey.from_url(url).flushdb()  # this test's own database
    running = start_host(settings={"VALKEY_URL": url, "TASKS_MAX_BACKLOG": str(LIMIT)})
    yield running
    running.stop()


def test_a_limit_of_200_holds_within_one_batch_while_slow_tasks_pile_up(limited_host: RunningHost) -> None:
    # Tasks take 0.5 s, 30 at a time: 60 finish a second, while batches of 10 arrive far faster.
    batch = [{"type": "sleep", "payload": {"seconds": 0.5}}] * BATCH
    accepted = refused = exact = 0
    worst = 0
    admitted_after_refusal = 0

    def finished(http: httpx.Client) -> int:
        totals = http.get("/api/stats").json()["totals"]
        return int(totals["processed"] + totals["dead_lettered"])

    with limited_host.client() as http:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            before = finished(http)
            answer = http.post("/api/tasks", json=batch)
            if answer.status_code != 202:
                assert answer.status_code == 429, answer.text
                problem = answer.json()
                assert problem["limit"] == LIMIT
                assert problem["backlog"] >= LIMIT
                assert int(answer.headers["Retry-After"]) > 0
                refused += 1
                continue
            accepted += BATCH
            admitted_after_refusal += BATCH if refused else 0
            # Where no task finished around the request, the backlog it left is known exactly.
            if finished(http) == before:
                exact += 1
                worst = max(worst, accepted - before)
    print(
        f"\nlimit {LIMIT}: at most {worst} unfinished after an admission ({exact} measured exactly);"
        f" {accepted} accepted, {refused} requests refused, {admitted_after_refusal} admitted after the"
        " first refusal"
    )
    assert exact >= 10
    assert LIMIT - BATCH <= worst < LIMIT + BATCH
    assert refused > 0
    assert admitted_after_refusal > 0  # room shows as tasks finish, without waiting for the timer
