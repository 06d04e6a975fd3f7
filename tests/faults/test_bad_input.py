"""Input no client should send: poison messages straight on the work queue, and hostile HTTP.

A bad message is dead-lettered once with its reason and never loops; a hostile request gets its
4xx; neither disturbs the good work beside it, and nothing answers 5xx.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import time
import uuid

import aio_pika
import httpx

from shared.pipeline.envelope import TaskEnvelope
from tests.faults.amqp import dead_letters, publish, ready_count
from tests.faults.conftest import HostFactory
from tests.faults.hosts import stop
from tests.faults.load import ROWS, Row, counters, task_states
from tests.faults.servers import PrivateServer
from tests.waiting import eventually

REQUEUE_COUNT = "x-ms-rabbitmq-requeuecount"


def _envelope(task_type: str, payload: dict[str, object]) -> TaskEnvelope:
    return TaskEnvelope(str(uuid.uuid4()), task_type, payload, time.time())


def test_poison_messages_are_dead_lettered_once_with_their_reason(
    hosts: HostFactory, rabbitmq: PrivateServer
) -> None:
    """Garbage bytes, JSON of the wrong shape, an unknown task type, a 1 MB body, a body nested
    100,000 deep, a gzipped body and a good task with a forged requeue count of 4 are published
    straight to the work queue. Expected: each bad one is in ``<queue>.dead-letter`` once with
    ``DeadLetterReason`` (Undecodable, or TaskFailed for the unknown type); the good one succeeds
    with one attempt; nothing is requeued or left on the queue."""
    host = hosts(6)
    url = host.environ["VALKEY_URL"]
    unknown = _envelope("no-such-type", {})
    good = _envelope("echo", {"message": "forged requeue count"})
    bad = {
        "garbage bytes": (aio_pika.Message(b"\x00\xff\xfe not json"), "Undecodable"),
        "wrong shape": (aio_pika.Message(b'{"hello": "world"}'), "Undecodable"),
        "unknown type": (aio_pika.Message(unknown.encode(), message_id=unknown.id), "UnknownTaskType"),
        "1 MB body": (
            aio_pika.Message(b'{"id": "huge", "type": "echo", "payload": "' + b"x" * 1_000_000 + b'"}'),
            "Undecodable",
        ),
        "nested 100,000 deep": (aio_pika.Message(b"[" * 100_000 + b"]" * 100_000), "Undecodable"),
        "gzipped": (
            aio_pika.Message(
                gzip.compress(_envelope("echo", {}).encode()),
                content_type="application/octet-stream",
                content_encoding="gzip",
            ),
            "Undecodable",
        ),
    }
    forged = aio_pika.Message(good.encode(), message_id=good.id, headers={REQUEUE_COUNT: 4})

    # When they are published straight to the work queue
    publish(rabbitmq.url(), host.queue, [message for message, _ in bad.values()] + [forged])

    # Then the good task succeeds once, and the bad ones are dead-lettered, each once
    dead_letter_queue = f"{host.queue}.dead-letter"
    eventually(lambda: task_states(url, [good.id])[good.id] == ("succeeded", 1), what="the good task done")
    eventually(lambda: ready_count(rabbitmq.url(), dead_letter_queue) >= len(bad), what="every dead letter")
    time.sleep(0.5)  # long enough for a message that loops to come round again
    found = dead_letters(rabbitmq.url(), host.queue)
    assert sorted(letter.reason for letter in found) == sorted(reason for _, reason in bad.values())
    assert ready_count(rabbitmq.url(), host.queue) == 0
    assert task_states(url, [unknown.id])[unknown.id][0] == "dead-lettered"
    assert stop(host) == 0
    output = "".join(host.output)
    assert "requeued as try" not in output, output[-3000:]
    assert "not settled" not in output, output[-3000:]
    row = Row("poison messages (7 published)", 7, 1, dead_lettered=len(found), duplicates=0)
    row.extra_successes = counters(url).get("processed", 0) - 1
    ROWS.append(row)
    assert (row.lost, row.extra_successes) == (0, 0), row


def _raw_status(port: int, request: bytes) -> int:
    """Send ``request`` on a fresh connection; the status of the answer (the host may answer and
    close before all of it is sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        head = sock.recv(64)
    return int(head.split(b" ")[1])


def test_hostile_requests_get_their_4xx_and_idle_connections_do_not_block_health(
    hosts: HostFactory,
) -> None:
    """A task nested 200 deep, 64 KiB of request headers, and 200 idle connections. Expected: 400,
    431, and /api/health still answering at once; a task submitted meanwhile succeeds; no 5xx."""
    host = hosts(7)
    port = int(host.base_url.rsplit(":", 1)[1])
    statuses: list[int] = []
    with host.client() as client:
        # When a task nested 200 deep is submitted
        deep: object = "bottom"
        for _ in range(200):
            deep = [deep]
        nested = client.post("/api/tasks", json={"type": "echo", "payload": {"message": deep}})
        statuses.append(nested.status_code)
        # And a request carries 64 KiB of headers
        big = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
        statuses.append(_raw_status(port, big))
        # And 200 connections are opened and left idle
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
        try:
            began = time.monotonic()
            statuses.append(httpx.get(f"{host.base_url}/api/health", timeout=5).status_code)
            health_took = time.monotonic() - began
            submitted = client.post("/api/tasks", json={"type": "echo", "payload": {"message": "beside"}})
            statuses.append(submitted.status_code)
        finally:
            for sock in idle:
                sock.close()

    # Then each got its 4xx, health answered at once, and the task beside them succeeded
    assert statuses == [400, 431, 200, 202], statuses
    assert health_took < 1.0, health_took
    task_id = submitted.json()["id"]
    url = host.environ["VALKEY_URL"]
    eventually(lambda: task_states(url, [task_id])[task_id] == ("succeeded", 1), what="the task done")
    row = Row("deep JSON, 64 KiB header, 200 idle connections", 1, 1)
    row.other_5xx = sum(status >= 500 for status in statuses)
    ROWS.append(row)
