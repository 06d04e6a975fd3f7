"""``GET /api/metrics``: the fleet-wide figures in Prometheus's text format."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from functions.metrics import CONTENT_TYPE, exposition
from shared.platform.rabbitmq_topology import delete_queue_topology
from shared.store.histogram import BOUNDS, bucket
from shared.store.stats import Figures
from tests.conftest import RABBITMQ_URL, require_service
from tests.hosting import RunningHost, start_host
from tests.private_valkey import private_valkey_url
from tests.waiting import eventually

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(\{(?P<labels>[^}]*)\})? (?P<value>[-+0-9.e]+|\+Inf)$")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        found.append((match["name"], labels, float(match["value"])))
    return found


def test_counters_and_histograms_are_exposed_with_their_labels() -> None:
    # Given figures as Valkey keeps them
    figures = Figures(
        counters={
            "accepted:echo": 5,
            "processed:echo": 4,
            "failed:fail": 2,
            "cache_hits": 3,
            "cache_misses": 1,
        },
        queue_wait={bucket(0.002): 3, bucket(0.5): 1},
        duration={bucket(0.01): 4},
        backlog={"queue": "tasks", "active": 7, "dead_lettered": 1, "scheduled": None, "taken_at": 0},
        cache_keys=2,
    )

    # When they are exposed
    found = samples("".join(exposition(figures)))

    # Then each counter carries its labels, and each histogram is cumulative up to +Inf = count
    assert ("tasklane_tasks_accepted_total", {"type": "echo"}, 5.0) in found
    assert ("tasklane_tasks_processed_total", {"type": "echo", "outcome": "succeeded"}, 4.0) in found
    assert ("tasklane_tasks_processed_total", {"type": "fail", "outcome": "failed"}, 2.0) in found
    assert ("tasklane_cache_lookups_total", {"result": "hit"}, 3.0) in found
    assert ("tasklane_queue_backlog", {"queue": "tasks", "state": "active"}, 7.0) in found
    assert not [s for s in found if s[0] == "tasklane_queue_backlog" and s[1]["state"] == "scheduled"]
    waits = [
        (labels["le"], value)
        for name, labels, value in found
        if name == "tasklane_task_queue_wait_seconds_bucket"
    ]
    values = [value for _, value in waits]
    assert values == sorted(values)
    assert waits[-1] == ("+Inf", 4.0)
    assert ("tasklane_task_queue_wait_seconds_count", {}, 4.0) in found
    le_of_fast = float(next(le for le, value in waits if value == 3.0))
    assert le_of_fast == float(f"{BOUNDS[bucket(0.002)]:.6g}")


def test_a_running_host_serves_the_figures_it_counted(host: RunningHost) -> None:
    # Given two echo tasks done
    with host.client() as http:
        ids = [http.post("/api/tasks", json={"type": "echo"}).json()["id"] for _ in range(2)]
        eventually(lambda: all(http.get(f"/api/tasks/{i}").json()["status"] == "succeeded" for i in ids))

        # When the metrics are read
        response = http.get("/api/metrics")

    # Then they are Prometheus text, with the tasks counted
    assert response.headers["content-type"] == CONTENT_TYPE
    found = samples(response.text)
    assert ("tasklane_tasks_accepted_total", {"type": "echo"}, 2.0) in found
    assert ("tasklane_tasks_processed_total", {"type": "echo", "outcome": "succeeded"}, 2.0) in found


@pytest.fixture(scope="module")
def host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("valkey")
    # A Valkey database of its own, so the counters are this test's alone.
    running = start_host(settings={"VALKEY_URL": private_valkey_url(9)})
    yield running
    running.stop()
    asyncio.run(delete_queue_topology(RABBITMQ_URL, running.queue))
