"""A type's limits hold across the fleet: two host processes on one queue and one Valkey keep
``api_call`` (10/s, 4 at a time) within 10 % of its rate over any 10 seconds and to 4 running at once,
and both do their share.

Real RabbitMQ and the session's own Valkey, through ``python -m local start`` twice.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import valkey

from shared.brokers.lanes import PRIORITIES, lane_queue
from shared.platform.rabbitmq_topology import delete_queue_topology
from shared.store.keys import COUNTERS, status_index, task_key
from tests.conftest import RABBITMQ_URL, private_valkey, require_service
from tests.hosting import RunningHost, start_host
from tests.waiting import eventually

#: This module's database of the session's own Valkey, emptied before the hosts start.
DATABASE = 10
TASKS = 200
#: Slow enough that the rate alone would let 5 run at once.
SLOW_TASKS, SLOW_SECONDS = 40, 0.5
RATE = 10.0
CONCURRENCY = 4
WINDOW = 10.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[list[RunningHost], valkey.Valkey]]:
    """Two hosts sharing one queue and one Valkey database."""
    require_service("rabbitmq")
    url = private_valkey(DATABASE)
    client = valkey.Valkey.from_url(url)
    client.flushdb()
    settings = {"TASKS_QUEUE": f"limits-{uuid.uuid4().hex[:12]}", "VALKEY_URL": url}
    hosts = [start_host(settings=settings, wait=False) for _ in range(2)]
    try:
        for host in hosts:
            eventually(lambda host=host: _healthy(host), 30, f"host {host.base_url} answering")
        yield hosts, client
    finally:
        for host in hosts:
            host.stop()
        for priority in PRIORITIES:
            asyncio.run(delete_queue_topology(RABBITMQ_URL, lane_queue(settings["TASKS_QUEUE"], priority)))
        client.flushdb()
        client.close()


def _healthy(host: RunningHost) -> bool:
    assert host.process.poll() is None, "".join(host.output)
    try:
        return httpx.get(f"{host.base_url}/api/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of ``times`` in any closed interval ``window`` long."""
    ordered = sorted(times)
    first, most = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] < at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most of the ``(start, end)`` spans open at one instant (an end before a start at a tie)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now, most = 0, 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most


def test_window_helpers_count_what_they_say() -> None:
    assert most_in_any_window([0, 1, 2, 10, 10.5, 21], 10) == 4
    assert most_at_once([(0, 2), (1, 3), (2, 4), (5, 6)]) == 2


def test_a_types_rate_holds_across_two_hosts(fleet: tuple[list[RunningHost], valkey.Valkey]) -> None:
    hosts, client = fleet
    # Given two hosts on one queue, When 200 quick api_call tasks are submitted at once
    ids, took = _run(hosts, client, TASKS, 0.0)
    spans = _spans(client, ids)
    starts = [start for start, _ in spans]
    busiest = most_in_any_window(starts, WINDOW)
    rate = (len(starts) - 1) / (max(starts) - min(starts))
    throttled = int(client.hget(COUNTERS, "throttled:api_call") or 0)
    ran = [_succeeded_on(host, ids) for host in hosts]
    print(
        f"\n{TASKS} api_call tasks (10/s, 4 at once, 0 s each) on two hosts: at most {busiest} starts in "
        f"any {WINDOW:.0f} s window (limit {RATE * WINDOW:.0f}, +10 % = {RATE * WINDOW * 1.1:.0f}); "
        f"{rate:.2f} starts/s overall; at most {most_at_once(spans)} running at once; {throttled} "
        f"deliveries put off; hosts ran {ran[0]} and {ran[1]}; all done in {took:.1f}s"
    )
    # Then no 10-second window holds more than 10 % over the limit
    assert busiest <= RATE * WINDOW * 1.1
    # And the limit did the holding back (deliveries were put off), yet kept close to its rate
    assert throttled > 0
    assert rate >= RATE * 0.8
    # And both hosts did their share: the limit is the fleet's, not one host's
    assert sum(ran) == TASKS
    assert min(ran) >= TASKS // 10


def test_a_types_concurrency_holds_across_two_hosts(fleet: tuple[list[RunningHost], valkey.Valkey]) -> None:
    hosts, client = fleet
    # Given two hosts on one queue, When api_call tasks that take half a second are submitted at once
    # (at 10/s, five would overlap)
    ids, took = _run(hosts, client, SLOW_TASKS, SLOW_SECONDS)
    spans = _spans(client, ids)
    at_once = most_at_once(spans)
    ran = [_succeeded_on(host, ids) for host in hosts]
    print(
        f"\n{SLOW_TASKS} api_call tasks of {SLOW_SECONDS} s on two hosts: at most {at_once} running at "
        f"once (limit {CONCURRENCY}); hosts ran {ran[0]} and {ran[1]}; all done in {took:.1f}s"
    )
    # Then never more than four ran at once, and four did: the limit, not the rate, held them
    assert at_once == CONCURRENCY
    # And both hosts ran some
    assert sum(ran) == SLOW_TASKS
    assert min(ran) > 0


def _run(
    hosts: list[RunningHost], client: valkey.Valkey, count: int, seconds: float
) -> tuple[list[str], float]:
    """Submit ``count`` api_call tasks at once and wait until all succeeded; their ids, and how long."""
    before = client.zcard(status_index("succeeded"))
    with hosts[0].client() as http:
        answer = http.post("/api/tasks", json=[{"type": "api_call", "payload": {"seconds": seconds}}] * count)
    assert answer.status_code == 202, answer.text
    started = time.monotonic()
    eventually(
        lambda: client.zcard(status_index("succeeded")) >= before + count,
        count * max(1 / RATE, seconds / CONCURRENCY) + 15,
        f"{count} api_call tasks succeeding",
        interval=0.5,
    )
    return [task["id"] for task in answer.json()], time.monotonic() - started


def _spans(client: valkey.Valkey, ids: list[str]) -> list[tuple[float, float]]:
    """When each task started and finished (epoch s), each on its first attempt."""
    spans = []
    for task_id in ids:
        start, end, attempts = client.hmget(task_key(task_id), "started_at", "finished_at", "attempts")
        assert attempts == b"1"  # a delivery put off is no attempt
        spans.append((float(start), float(end)))
    return spans


def _succeeded_on(host: RunningHost, ids: list[str]) -> int:
    """How many of the tasks this host's log says it ran."""
    wanted = set(ids)
    pattern = re.compile(r"Task (\S+) \(api_call\) attempt 1 succeeded")
    return sum(1 for line in host.output if (m := pattern.search(line)) and m.group(1) in wanted)
