"""The host dies or is stopped while it works; another host takes over the same queue and Valkey.

A task is run again only when a host died while running it: one that already succeeded is never
run a second time, whoever sees its message again.
"""

from __future__ import annotations

import time

import aio_pika

from shared.pipeline.envelope import TaskEnvelope
from tests.faults.amqp import publish
from tests.faults.conftest import HostFactory
from tests.faults.hosts import stop
from tests.faults.load import Load, Row, counters, settle, sleep_task, submitted_at, task_states
from tests.faults.servers import PrivateServer
from tests.hosting import RunningHost
from tests.waiting import eventually


def _succeeded(host: RunningHost, ids: list[str]) -> int:
    return sum(status == "succeeded" for status, _ in task_states(host.environ["VALKEY_URL"], ids).values())


def _successor(hosts: HostFactory, database: int, predecessor: RunningHost) -> RunningHost:
    """A new host on the same queue and Valkey database as ``predecessor``."""
    return hosts(database, TASKS_QUEUE=predecessor.queue)


def test_a_host_killed_under_load_loses_nothing_and_reruns_only_what_it_was_running(
    hosts: HostFactory,
) -> None:
    """The host is killed (SIGKILL) with tasks queued and running; a new host starts on the same
    queue and Valkey. Expected: every accepted task succeeds, none is lost, and only tasks that were
    running at the kill run a second time."""
    host = hosts(4)
    url = host.environ["VALKEY_URL"]
    # Given 200 tasks accepted, some finished and some running
    burst = Load(host, 200, per_second=500, task=sleep_task(0.3), threads=8).run()
    assert burst.statuses() == {202: 200}
    eventually(lambda: _succeeded(host, burst.accepted_ids) >= 40, within=20, what="40 tasks finished")

    # When the host is killed, and another one starts on the same queue
    host.process.kill()
    host.process.wait()
    at_kill = task_states(url, burst.accepted_ids)
    running = {task_id for task_id, (status, _) in at_kill.items() if status == "running"}
    _successor(hosts, 4, host)

    # Then every task succeeded; only those running at the kill ran twice
    states = settle(url, burst.accepted_ids, within=30)
    row = Row.measure("host killed (SIGKILL), new host", burst, states, processed=counters(url)["processed"])
    rerun = {task_id for task_id, (_, attempts) in states.items() if attempts > 1}
    row.notes.append(f"{len(running)} running at the kill, {len(rerun)} of them ran again")
    assert (row.accepted, row.succeeded, row.lost, row.other_5xx) == (200, 200, 0, 0), row
    assert running, row
    assert rerun <= running, row
    assert row.duplicates == len(rerun), row


def test_a_host_stopped_under_load_drains_and_its_successor_runs_the_rest_once(
    hosts: HostFactory,
) -> None:
    """The host gets SIGTERM with tasks queued, running and being submitted; a new host starts on
    the same queue and Valkey. Expected: the host finishes or hands back what it holds and exits 0;
    every accepted task succeeds exactly once; no 5xx."""
    host = hosts(5)
    url = host.environ["VALKEY_URL"]
    # Given 200 tasks accepted and more being submitted
    burst = Load(host, 200, per_second=500, task=sleep_task(0.3), threads=8).run()
    assert burst.statuses() == {202: 200}
    eventually(lambda: _succeeded(host, burst.accepted_ids) >= 40, within=20, what="40 tasks finished")
    trickle = Load(host, 10, per_second=20).start()
    time.sleep(0.2)

    # When the host is told to stop, and another one starts on the same queue
    assert stop(host) == 0
    trickle.join()
    # (a request that came after the stop may find nothing listening, but none is dropped unanswered)
    assert set(trickle.errors()) <= {"ConnectError"}, trickle.errors()
    _successor(hosts, 5, host)

    # Then every accepted task succeeded exactly once
    ids = burst.accepted_ids + trickle.accepted_ids
    states = settle(url, ids, within=30)
    row = Row.measure(
        "host stopped (SIGTERM), new host", trickle, states, processed=counters(url)["processed"]
    )
    row.notes.append(f"{row.no_answer} submissions after the stop found nothing listening")
    assert (row.lost, row.dead_lettered, row.duplicates, row.extra_successes) == (0, 0, 0, 0), row
    assert row.other_5xx == 0, row
    assert row.succeeded == row.accepted == 200 + trickle.statuses()[202], row


def test_a_message_of_a_task_that_already_succeeded_is_not_run_again(
    hosts: HostFactory, rabbitmq: PrivateServer
) -> None:
    """What a host that crashed after the handler succeeded but before the ack leaves behind: the
    task's message once more, while Valkey says it succeeded. Expected: it is acknowledged without
    a second run (attempts stay 1, the success counter does not move)."""
    host = hosts(8)
    url = host.environ["VALKEY_URL"]
    # Given a task that succeeded
    with host.client() as client:
        answer = client.post("/api/tasks", json={"type": "echo", "payload": {"message": "once"}})
        task_id = answer.json()["id"]
        eventually(lambda: task_states(url, [task_id])[task_id] == ("succeeded", 1), what="the task done")

    # When its message arrives again, followed by another task
    envelope = TaskEnvelope(task_id, "echo", {"message": "once"}, submitted_at(url, task_id))
    publish(rabbitmq.url(), host.queue, [aio_pika.Message(envelope.encode(), message_id=task_id)])
    with host.client() as client:
        after = client.post("/api/tasks", json={"type": "echo", "payload": {"message": "after"}}).json()["id"]
    eventually(lambda: task_states(url, [after])[after][0] == "succeeded", what="the later task done")
    assert stop(host) == 0

    # Then the redelivered message was settled without running the task again
    states = task_states(url, [task_id, after])
    row = Row.measure("message of a succeeded task again", None, states, processed=counters(url)["processed"])
    assert states[task_id] == ("succeeded", 1), row
    assert (row.duplicates, row.extra_successes, row.lost) == (0, 0, 0), row
    assert f"Task {task_id} already succeeded" in "".join(host.output)
