"""Starting as ``func start`` does: the function list, a RabbitMQ trigger on a queue nobody declared,
the settings that size the worker, and the app's queues declared by the project's own setup."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from pathlib import Path

import aio_pika
import pytest

from local.host.errors import HostError, IndexingError
from local.host.indexing import Binding, IndexedFunction
from local.host.invoker import Invoker
from local.host.settings import HostConfig, thread_pool_size, worker_process_count
from local.host.triggers import ListenerContext
from local.host.triggers.rabbitmq import RabbitMQListener
from local.host.triggers.retrying import RetryingListener
from local.services.topology import app_queues, declare_app_queues
from shared.platform.rabbitmq_topology import QueueTopology, delete_queue_topology
from tests.conftest import RABBITMQ_URL, require_service
from tests.hosting import RunningHost, start_host

APP = Path(__file__).parent / "apps_fidelity" / "startup_app"


@pytest.fixture(scope="module")
def started() -> tuple[RunningHost, str]:
    """A host of the startup app, its RabbitMQ trigger's queue never declared, after one request."""
    require_service("rabbitmq")
    queue = f"fidelity-missing-{uuid.uuid4().hex[:12]}"
    host = start_host(APP, settings={"VALKEY_URL": "unused", "FIDELITY_QUEUE": queue})
    try:
        with host.client() as http:
            assert http.get("/api/ping").text == "pong"
            assert http.get("/api/underscored").status_code == 404
    finally:
        host.stop()
    return host, queue


def _log_lines(host: RunningHost) -> list[str]:
    return [re.sub(r"^\[[^\]]+Z\] ", "", line.rstrip("\n")) for line in host.output if line.startswith("[")]


def test_the_function_list_is_core_tools(started: tuple[RunningHost, str]) -> None:
    host, _ = started
    base = host.base_url.replace("127.0.0.1", "localhost")
    listing = "".join(host.output)
    assert (
        "\nFunctions:\n\n"
        f"\thealth: [GET] {base}/api/health\n\n"
        f"\tping:  {base}/api/ping\n\n"  # no methods declared: none shown
        "\ttake: rabbitMQTrigger\n\n"
    ) in listing


def test_a_function_in_error_is_named_and_left_out(started: tuple[RunningHost, str]) -> None:
    host, _ = started
    assert (
        "The 'underscored' function is in error: The binding name the_request is invalid."
        " Please assign a valid name to the binding."
    ) in _log_lines(host)
    assert "\tunderscored:" not in "".join(host.output)


def test_a_trigger_on_a_missing_queue_is_disabled_with_the_clients_message(
    started: tuple[RunningHost, str],
) -> None:
    host, queue = started
    lines = _log_lines(host)
    failed = lines.index("Error indexing method 'Functions.take'")
    assert lines[failed + 1 : failed + 3] == [
        "The AMQP operation was interrupted: AMQP close-reason, initiated by Peer, code=404,"
        f" text='NOT_FOUND - no queue '{queue}' in vhost '/'', classId=50, methodId=10.",
        "Function 'Functions.take' failed indexing and will be disabled.",
    ]
    # And the host still served, and never declared the queue
    assert host.process.returncode == 0
    assert not any("still unable to start" in line for line in lines)


async def test_the_queue_is_not_declared_by_the_listener(started: tuple[RunningHost, str]) -> None:
    _, queue = started
    async with await aio_pika.connect(RABBITMQ_URL) as connection:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(queue, passive=True)


def test_print_at_import_is_a_console_line(started: tuple[RunningHost, str]) -> None:
    host, _ = started
    assert "startup app imported" in _log_lines(host)


# --- the listener in process: disabled at start, waited for once retrying -------------------------


def _listener(queue: str) -> RabbitMQListener:
    trigger = Binding(
        "message", "rabbitMQTrigger", "IN", {"queueName": queue, "connectionStringSetting": "C"}
    )

    def take(message: str) -> None: ...

    fn = IndexedFunction("take", trigger, (trigger,), take, Path("."))
    return RabbitMQListener(fn, ListenerContext(Invoker(), HostConfig(), {"C": RABBITMQ_URL}, "t"))


async def test_a_missing_queue_at_start_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    require_service("rabbitmq")
    queue = f"fidelity-absent-{uuid.uuid4().hex[:12]}"
    listener = _listener(queue)
    with pytest.raises(IndexingError, match=f"text='NOT_FOUND - no queue '{queue}' in vhost '/''"):
        await listener.start()
    retrying = RetryingListener(_listener(queue), min_delay=0.01, max_delay=0.02)
    with caplog.at_level(logging.INFO):
        await retrying.start()
        await asyncio.sleep(0.1)
    await retrying.stop()
    assert "Function 'Functions.take' failed indexing and will be disabled." in caplog.messages
    assert not [m for m in caplog.messages if "Retrying to start listener" in m]


# --- the worker's sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "size", "warning"),
    [
        (None, None, None),
        ("", None, None),
        ("4", 4, None),
        ("four", None, "PYTHON_THREADPOOL_THREAD_COUNT must be an integer"),
        ("0", None, "PYTHON_THREADPOOL_THREAD_COUNT must be set to a value between 1 and sys.maxint."),
    ],
)
def test_thread_pool_size_as_the_worker_reads_it(
    raw: str | None, size: int | None, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {} if raw is None else {"PYTHON_THREADPOOL_THREAD_COUNT": raw}
    assert thread_pool_size(environ) == size
    if warning is None:
        assert not caplog.messages
    else:
        assert caplog.messages[0].startswith(warning)


@pytest.mark.parametrize(("raw", "count"), [(None, 1), ("1", 1), ("0", 1), ("-3", 1), ("4", 4), ("10", 10)])
def test_worker_process_count_as_the_host_reads_it(raw: str | None, count: int) -> None:
    assert worker_process_count({} if raw is None else {"FUNCTIONS_WORKER_PROCESS_COUNT": raw}) == count


@pytest.mark.parametrize(
    ("raw", "message"),
    [("11", "ProcessCount must not be greater than MaxProcessCount"), ("two", "is not a whole number")],
)
def test_a_worker_process_count_the_host_refuses_stops_it(raw: str, message: str) -> None:
    with pytest.raises(HostError, match=message):
        worker_process_count({"FUNCTIONS_WORKER_PROCESS_COUNT": raw})


# --- the project's setup declares what the app's triggers consume ---------------------------------


def test_the_app_consumes_a_queue_per_lane_under_the_local_profile_only() -> None:
    assert app_queues({"TASKLANE_PROFILE": "local", "TASKS_QUEUE": "jobs"}) == [
        "jobs.high",
        "jobs",
        "jobs.low",
    ]
    assert app_queues({"TASKLANE_PROFILE": "local"}) == ["tasks.high", "tasks", "tasks.low"]
    assert app_queues({"TASKLANE_PROFILE": "azure", "TASKS_QUEUE": "jobs"}) == []


async def _exists(channel: aio_pika.abc.AbstractChannel, queue: str) -> bool:
    try:
        await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        await channel.reopen()
        return False
    return True


def test_services_declare_each_lane_with_its_dead_letter_queue() -> None:
    require_service("rabbitmq")
    queue = f"fidelity-lanes-{uuid.uuid4().hex[:12]}"
    environ = {"TASKLANE_PROFILE": "local", "TASKS_QUEUE": queue, "RabbitMQConnection": RABBITMQ_URL}
    try:
        declared = declare_app_queues(environ)

        async def check() -> list[bool]:
            async with await aio_pika.connect(RABBITMQ_URL) as connection:
                channel = await connection.channel()
                names = [n for q in declared for n in (q, QueueTopology.for_queue(q).dead_letter_queue)]
                return [await _exists(channel, name) for name in names]

        assert declared == [f"{queue}.high", queue, f"{queue}.low"]
        assert all(asyncio.run(check()))

        # And the trigger of each lane starts on it
        async def consume() -> None:
            for lane in declared:
                listener = _listener(lane)
                await listener.start()
                await listener.stop()

        asyncio.run(consume())
    finally:
        for lane in (f"{queue}.high", queue, f"{queue}.low"):
            asyncio.run(delete_queue_topology(RABBITMQ_URL, lane))
