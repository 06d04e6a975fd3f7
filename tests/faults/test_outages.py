"""A dependency goes away (or hangs) while tasks are queued, running and being submitted.

Every scenario ends with the same ledger: each task that was answered 202 succeeded exactly once,
nothing was lost, and no answer was a 5xx other than a 503 with Retry-After.
"""

from __future__ import annotations

import time

from tests.faults.conftest import HostFactory
from tests.faults.hosts import stop
from tests.faults.load import FINISHED, Load, Row, counters, settle, sleep_task, task_states
from tests.faults.servers import PrivateServer
from tests.hosting import RunningHost

OUTAGE = 10.0


def _measure(scenario: str, host: RunningHost, load: Load, ids: list[str], within: float = 45) -> Row:
    url = host.environ["VALKEY_URL"]
    states = settle(url, ids, within)
    return Row.measure(scenario, load, states, processed=counters(url).get("processed", 0))


def _explain(row: Row, host: RunningHost) -> str:
    """The row, then what the host said about its broker connections (it is stopped for that)."""
    stop(host)
    lines = "".join(host.output).splitlines()
    said = [line for line in lines if any(name in line for name in ("triggers", "aio_pika", "aiormq"))]
    return "\n".join([str(row), "the host's trigger lines:", *said[-40:], "its last lines:", *lines[-15:]])


def _unfinished(host: RunningHost, ids: list[str]) -> int:
    return sum(status not in FINISHED for status, _ in task_states(host.environ["VALKEY_URL"], ids).values())


def test_a_valkey_outage_under_load_loses_no_task(hosts: HostFactory, valkey: PrivateServer) -> None:
    """Valkey stops for 10 s while tasks are queued, running and being submitted, then comes back
    with its data. Expected: every task answered 202 succeeds once; submissions during the outage
    may answer 503 with Retry-After, nothing answers another 5xx."""
    host = hosts(1)
    # Given 150 half-second tasks accepted, most of them still queued or running
    burst = Load(host, 150, per_second=500, task=sleep_task(0.5), threads=8).run()
    assert burst.statuses() == {202: 150}
    trickle = Load(host, 60, per_second=4).start()
    still_running = _unfinished(host, burst.accepted_ids)

    # When Valkey stops for 10 s under that load, and starts again on its data
    valkey.stop()
    time.sleep(OUTAGE)
    valkey.start()
    trickle.join()

    # Then every accepted task succeeded exactly once, and the outage showed only as 503s
    ids = burst.accepted_ids + trickle.accepted_ids
    row = _measure("Valkey down 10 s", host, trickle, ids)
    row.notes.append(f"{still_running} of 150 burst tasks unfinished when Valkey stopped")
    assert still_running > 50, row
    assert (row.lost, row.dead_lettered, row.duplicates) == (0, 0, 0), row
    assert (row.other_5xx, row.no_answer) == (0, 0), row
    assert row.succeeded == row.accepted == 150 + trickle.statuses()[202], row
    assert row.answered_503 > 0, row
    assert all(a.retry_after for a in trickle.answers if a.status == 503), row


def test_a_rabbitmq_outage_under_load_answers_503_and_loses_no_accepted_task(
    hosts: HostFactory, rabbitmq: PrivateServer
) -> None:
    """RabbitMQ stops for about 10 s while tasks are queued, running and being submitted, then
    starts again on its data. Expected: submissions meanwhile answer 503 with Retry-After (never
    500), and every task answered 202, before or after, succeeds once."""
    host = hosts(2)
    # Given 150 half-second tasks accepted, most of them still queued or running
    burst = Load(host, 150, per_second=500, task=sleep_task(0.5), threads=8).run()
    assert burst.statuses() == {202: 150}
    trickle = Load(host, 60, per_second=4).start()
    still_running = _unfinished(host, burst.accepted_ids)

    # When RabbitMQ stops for about 10 s under that load, and starts again
    stopped = time.monotonic()
    rabbitmq.stop()
    time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped)))
    rabbitmq.start()
    trickle.join()

    # Then submissions during the outage were 503s with Retry-After, and every 202 succeeded once
    row = _measure("RabbitMQ down 10 s", host, trickle, burst.accepted_ids + trickle.accepted_ids, within=60)
    row.notes.append(f"{still_running} of 150 burst tasks unfinished when RabbitMQ stopped")
    assert still_running > 50, row
    assert (row.lost, row.dead_lettered, row.duplicates) == (0, 0, 0), _explain(row, host)
    assert (row.other_5xx, row.no_answer) == (0, 0), row
    assert row.succeeded == row.accepted == 150 + trickle.statuses()[202], row
    assert row.answered_503 > 0, row
    assert all(a.retry_after for a in trickle.answers if a.status == 503), row


def test_a_stalled_rabbitmq_answers_every_submission_within_seconds(
    hosts: HostFactory, rabbitmq: PrivateServer
) -> None:
    """RabbitMQ hangs (SIGSTOP) for 8 s, then resumes (SIGCONT). Expected: every submission is
    answered, 202 or 503, within about 6 s (a publish waits 5 s for its confirm), none hangs for the
    whole stall, and every task answered 202 succeeds once."""
    host = hosts(3)
    # Given tasks accepted and being processed
    burst = Load(host, 60, per_second=500, task=sleep_task(0.2), threads=8).run()
    assert burst.statuses() == {202: 60}

    # When the broker hangs for 8 s while tasks are submitted
    trickle = Load(host, 40, per_second=4, threads=8).start()
    with rabbitmq.frozen():
        time.sleep(8.0)
    trickle.join()

    # Then each submission was answered within 6 s, and no accepted task was lost
    row = _measure("RabbitMQ stalled 8 s (SIGSTOP)", host, trickle, burst.accepted_ids + trickle.accepted_ids)
    # A publish whose confirm timed out answers 503, yet the broker may hold the message and run it
    # (shared/pipeline/accept.py forgets such a task): reported here, not yet asserted.
    row.notes.append(f"{row.extra_successes} tasks answered 503 ran anyway")
    assert row.slowest_answer < 6.0, row
    assert (row.lost, row.dead_lettered, row.duplicates) == (0, 0, 0), row
    assert (row.other_5xx, row.no_answer) == (0, 0), row
    assert row.succeeded == row.accepted == 60 + trickle.statuses()[202], row
    assert row.answered_503 > 0, row
