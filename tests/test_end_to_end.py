"""The pipeline end to end through our host: HTTP → RabbitMQ → processing → Valkey → HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from local import services
from shared.platform.rabbitmq_topology import delete_queue_topology
from tests.hosting import RunningHost, free_port, start_host
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("rabbitmq_url", "valkey_url")


@pytest.fixture(scope="module")
def host() -> Iterator[RunningHost]:
    running = start_host()
    yield running
    running.stop()
    asyncio.run(_delete_queue(running.queue))


async def _delete_queue(queue: str) -> None:
    await delete_queue_topology("amqp://guest:guest@127.0.0.1:5672/", queue)


async def _drain(queue: str, expected: int, within: float = 20) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    source = await channel.get_queue(queue)
    found: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + within
    while len(found) < expected and time.monotonic() < deadline:
        message = await source.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        found.append(message)
    await connection.close()
    return found


async def _publish_raw(queue: str, body: bytes) -> None:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    await channel.default_exchange.publish(aio_pika.Message(body, message_id="raw-1"), routing_key=queue)
    await connection.close()


def _status(host: RunningHost, task_id: str) -> dict[str, Any]:
    with host.client() as http:
        return dict(http.get(f"/api/tasks/{task_id}").json())


def _submit(host: RunningHost, document: Any, **headers: str) -> Any:
    with host.client() as http:
        response = http.post("/api/tasks", json=document, headers=headers)
    assert response.status_code == 202, response.text
    return response


def test_submit_process_status_and_stats(host: RunningHost) -> None:
    # Given a running host, When a task is submitted
    response = _submit(host, {"type": "add", "payload": {"x": 40, "y": 2}})
    task_id = response.json()["id"]
    # Then it is accepted with a Location, and soon succeeds with its result
    assert response.headers["location"] == f"/api/tasks/{task_id}"
    eventually(lambda: _status(host, task_id)["status"] == "succeeded")
    status = _status(host, task_id)
    assert status["result"] == 42.0
    assert status["attempts"] == 1
    assert status["finished_at"] >= status["started_at"] >= status["submitted_at"]
    with host.client() as http:
        stats = http.get("/api/stats").json()
    assert stats["totals"]["processed"] >= 1
    assert stats["per_type"]["add"]["processed"] >= 1
    assert stats["latency_seconds"]["queue_wait"]["p99"] is not None


def test_batch_submission(host: RunningHost) -> None:
    response = _submit(host, [{"type": "echo", "payload": {"message": i}} for i in range(50)])
    items = response.json()
    assert [item["status"] for item in items] == ["queued"] * 50
    eventually(lambda: all(_status(host, item["id"])["status"] == "succeeded" for item in items))
    assert [_status(host, item["id"])["result"] for item in items[:3]] == [0, 1, 2]


def test_unknown_task_is_404_and_keys_are_required(host: RunningHost) -> None:
    with host.client() as http:
        assert http.get("/api/tasks/no-such-task").status_code == 404
    import httpx

    assert httpx.get(f"{host.base_url}/api/stats").status_code == 401
    assert httpx.get(f"{host.base_url}/api/health").status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"type": "echo"}', "text/plain", 415),
        (b"{not json", "application/json", 400),
        (b'{"type": "nope"}', "application/json", 400),
        # Past TASKS_MAX_BODY_BYTES (4 MiB by default), under the host's own 100 MB limit
        (
            b'{"type": "echo", "payload": {"message": "' + b"x" * (4 * 1024 * 1024) + b'"}}',
            "application/json",
            413,
        ),
    ],
)
def test_bad_requests(host: RunningHost, content: bytes, content_type: str, status: int) -> None:
    with host.client() as http:
        response = http.post("/api/tasks", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["error"]


def test_failing_task_is_dead_lettered_with_its_error(host: RunningHost) -> None:
    task_id = _submit(host, {"type": "fail", "payload": {"reason": "always"}}).json()["id"]
    eventually(lambda: _status(host, task_id)["status"] == "dead-lettered", within=30)
    [dead] = asyncio.run(_drain(f"{host.queue}.dead-letter", expected=1))
    assert json.loads(dead.body)["id"] == task_id
    status = _status(host, task_id)
    assert status["attempts"] == 3  # fail's max_attempts; later redeliveries did not run it
    assert "always" in status["error"]


def test_undecodable_message_reaches_the_dead_letter_queue(host: RunningHost) -> None:
    asyncio.run(_publish_raw(host.queue, b"\xff this is not a task"))
    [dead] = asyncio.run(_drain(f"{host.queue}.dead-letter", expected=1))
    assert dead.body == b"\xff this is not a task"
    with host.client() as http:
        assert http.get("/api/stats").json()["totals"]["undecodable"] >= 1


def test_idempotency_key(host: RunningHost) -> None:
    first = _submit(host, {"type": "echo"}, **{"Idempotency-Key": f"k-{host.queue}"}).json()
    again = _submit(host, {"type": "echo"}, **{"Idempotency-Key": f"k-{host.queue}"}).json()
    assert again["id"] == first["id"]


def test_ready_is_503_when_valkey_stops(tmp_path: Path) -> None:
    # Given a host on a Valkey of its own
    port = free_port()
    ports = {"valkey": port}
    services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lambda line: None)
    host = start_host(settings={"VALKEY_URL": f"valkey://127.0.0.1:{port}/0"})
    try:
        with host.client() as http:
            assert http.get("/api/ready").json() == {
                "ready": True,
                "checks": {"valkey": True, "broker": True},
            }
            # When Valkey stops
            services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lambda line: None)
            response = http.get("/api/ready")
        # Then the host is not ready, and says which part is missing
        assert response.status_code == 503
        assert response.json()["checks"] == {"valkey": False, "broker": True}
    finally:
        host.stop()
        services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lambda line: None)
        asyncio.run(_delete_queue(host.queue))
