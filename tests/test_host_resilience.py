"""The host keeps serving when a trigger's broker is down at start, and picks the trigger up later."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from local import services
from shared.platform.rabbitmq_topology import declare_queue_topology
from tests.apps import write_app
from tests.conftest import require_binary, require_service
from tests.hosting import ROOT, free_port, free_port_pair, start_host
from tests.waiting import eventually

APP = """
    import os
    from pathlib import Path

    import azure.functions as func

    app = func.FunctionApp()


    @app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")


    @app.generic_trigger(
        arg_name="message",
        type="rabbitMQTrigger",
        queue_name="%QUEUE%",
        connection_string_setting="RabbitMQConnection",
    )
    def take_message(message: str) -> None:
        Path(os.environ["RECEIVED_DIR"], message).write_text(message)
"""


@pytest.fixture
def broker_port(tmp_path: Path) -> Iterator[int]:
    """A port for a private RabbitMQ, which the test starts when it wants; stopped at the end."""
    require_binary("rabbitmq-server")
    port = free_port_pair()
    yield port
    services.down(["rabbitmq"], ports={"rabbitmq": port}, state_dir=tmp_path / "services", report=print)


async def _publish(url: str, queue: str, body: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await declare_queue_topology(channel, queue)
        await channel.default_exchange.publish(aio_pika.Message(body.encode()), routing_key=queue)


def test_host_serves_while_the_broker_is_down_and_consumes_once_it_is_up(
    tmp_path: Path, broker_port: int
) -> None:
    # Given an app with a RabbitMQ trigger whose broker is not running
    received = tmp_path / "received"
    received.mkdir()
    url = f"amqp://guest:guest@127.0.0.1:{broker_port}/"
    settings = {"RabbitMQConnection": url, "QUEUE": "resilience", "RECEIVED_DIR": str(received)}
    settings["VALKEY_URL"] = "valkey://127.0.0.1:1/0"  # the app uses no Valkey
    host = start_host(write_app(tmp_path / "app", APP), settings=settings)
    try:
        # Then HTTP is served at once
        with host.client() as client:
            assert client.get("/api/health").text == "ok"

        # When the broker comes up later and a message is sent
        services.ensure(
            ["rabbitmq"], ports={"rabbitmq": broker_port}, state_dir=tmp_path / "services", report=print
        )
        asyncio.run(_publish(url, "resilience", "hello-after-start"))

        # Then the trigger, retried in the background, receives it
        eventually(lambda: (received / "hello-after-start").exists(), within=60, what="the message handled")
    finally:
        host.stop()
    # And the log says what the Functions host says, then that the listener started
    output = "".join(host.output)
    assert "The listener for function 'Functions.take_message' was unable to start." in output
    assert "Listener successfully started for function 'Functions.take_message' after" in output


def test_refused_credentials_still_stop_the_host_at_start(tmp_path: Path) -> None:
    require_service("rabbitmq")
    # Given a trigger whose connection names a user the broker refuses
    app = write_app(tmp_path / "app", APP)
    settings = {
        "RabbitMQConnection": "amqp://guest:not-the-password@127.0.0.1:5672/",
        "QUEUE": "resilience-refused",
        "RECEIVED_DIR": str(tmp_path),
    }

    # When the host starts
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "local",
            "start",
            "--no-services",
            "--app-dir",
            str(app),
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it exits non-zero, naming the function and the refusal
    assert result.returncode == 1
    assert "Function 'take_message': cannot consume RabbitMQ queue 'resilience-refused'" in result.stderr


PID_APP = """
    import os

    import azure.functions as func

    app = func.FunctionApp()


    @app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(str(os.getpid()))
"""


def _pids_answering(base_url: str, tries: int = 40) -> set[int]:
    """The worker pids that answered ``tries`` requests, each on a connection of its own."""
    return {int(httpx.get(f"{base_url}/api/health", timeout=5).text) for _ in range(tries)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_worker_is_replaced_and_a_stop_still_stops_them_all(tmp_path: Path) -> None:
    # Given a host with two worker processes, both serving
    app = write_app(tmp_path / "app", PID_APP)
    host = start_host(app, settings={"FUNCTIONS_WORKER_PROCESS_COUNT": "2", "VALKEY_URL": "unused"})
    try:
        eventually(lambda: len(_pids_answering(host.base_url)) == 2, what="two workers answering")
        first, second = sorted(_pids_answering(host.base_url, tries=80))

        # When one of them is killed outright
        os.kill(first, signal.SIGKILL)

        # Then a new worker takes its place and serves beside the survivor
        eventually(
            lambda: _pids_answering(host.base_url) - {second} - {first},
            within=30,
            what="a replacement worker answering",
        )
        replacement = (_pids_answering(host.base_url, tries=80) - {second}).pop()
    finally:
        # When the host is stopped
        code = host.stop()
    # Then it exits cleanly, having logged the replacement, and no worker is left running
    output = "".join(host.output)
    assert code == 0, output
    assert f"Worker {first} was killed by signal 9; started worker {replacement} in its place" in output
    assert not _alive(second)
    assert not _alive(replacement)
