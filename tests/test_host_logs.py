"""The host's log reads as ``func start``'s: ``[time] message`` lines, one per invocation start and
end, the reason each trigger gives, and library noise kept off unless a logger is asked for by name."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local.host.errors import HostError
from local.host.indexing import Binding
from local.host.invoker import HTTP_REASON, invocation_reason
from local.host.logs import parse_log_levels
from shared.platform.rabbitmq_topology import delete_queue_topology
from tests.apps import write_app
from tests.conftest import RABBITMQ_URL, require_service
from tests.hosting import start_host
from tests.waiting import eventually

NOON = datetime(2025, 6, 1, 12, 0, 0, 4457, tzinfo=UTC)


@pytest.mark.parametrize(
    ("trigger", "reason"),
    [
        (Binding("req", "httpTrigger", "IN", {}), HTTP_REASON),
        (Binding("timer", "timerTrigger", "IN", {}), "Timer fired at 2025-06-01T12:00:00.004457+00:00"),
        (
            Binding("msg", "serviceBusTrigger", "IN", {"queueName": "tasks"}),
            "New ServiceBus message detected on 'tasks'.",
        ),
        (
            Binding("msg", "serviceBusTrigger", "IN", {"topicName": "t", "subscriptionName": "s"}),
            "New ServiceBus message detected on 't/Subscriptions/s'.",
        ),
        (
            Binding("msg", "rabbitMQTrigger", "IN", {"queueName": "tasks"}),
            "RabbitMQ message detected from queue: tasks at 2025-06-01 12:00:00",
        ),
        (Binding("blob", "blobTrigger", "IN", {}), "(null)"),
    ],
)
def test_each_trigger_gives_the_functions_hosts_reason(trigger: Binding, reason: str) -> None:
    assert invocation_reason(trigger, NOON) == reason


@pytest.mark.parametrize(
    ("spec", "root", "named"),
    [
        ("", "INFO", {}),
        ("debug", "DEBUG", {}),
        ("WARNING,Function=ERROR", "WARNING", {"Function": "ERROR"}),
        (
            "DEBUG, aiormq=DEBUG , Function.health=warning",
            "DEBUG",
            {"aiormq": "DEBUG", "Function.health": "WARNING"},
        ),
    ],
)
def test_log_level_setting_names_a_level_and_loggers(spec: str, root: str, named: dict[str, str]) -> None:
    assert parse_log_levels(spec) == (root, named)


def test_an_unknown_level_is_refused_naming_the_choices() -> None:
    with pytest.raises(HostError, match="'LOUD' is not a level"):
        parse_log_levels("INFO,Function=LOUD")


APP = """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="health")
def health(req: func.HttpRequest) -> str:
    return "ok"


@app.route(route="hello")
def hello(req: func.HttpRequest) -> str:
    return "hi"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> str:
    raise RuntimeError("boom")
"""

_EXECUTING = re.compile(
    r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] Executing 'Functions\.hello' "
    r"\(Reason='This function was programmatically called via the host APIs\.', Id=([0-9a-f-]{36})\)$",
    re.MULTILINE,
)


def test_a_call_logs_executing_and_executed_with_one_invocation_id(tmp_path: Path) -> None:
    # Given a host of a small HTTP app at the default level
    host = start_host(write_app(tmp_path / "app", APP))
    try:
        # When one route succeeds and another fails
        with host.client() as http:
            assert http.get("/api/hello").status_code == 200
            failed = http.get("/api/boom")
        assert failed.status_code == 500
    finally:
        host.stop()
    output = "".join(host.output)

    # Then each invocation has its start and end line, with the same id
    started = _EXECUTING.search(output)
    assert started, output
    invocation = started.group(1)
    assert re.search(
        rf"Z\] Executed 'Functions\.hello' \(Succeeded, Id={invocation}, Duration=\d+ms\)$",
        output,
        re.MULTILINE,
    ), output
    boom = failed.json()["invocationId"]
    assert f"Z] Executing 'Functions.boom' (Reason='{HTTP_REASON}', Id={boom})" in output
    assert re.search(
        rf"Z\] Executed 'Functions\.boom' \(Failed, Id={boom}, Duration=\d+ms\)$", output, re.MULTILINE
    )


def test_invocation_lines_are_quieted_by_name_and_amqp_frames_stay_off_at_debug() -> None:
    require_service("rabbitmq")
    require_service("valkey")
    # Given the app's host at DEBUG, its invocation lines turned down by their category
    host = start_host(settings={"TASKLANE_LOG_LEVEL": "DEBUG,Function=WARNING"})
    try:
        # When a task runs through RabbitMQ
        with host.client() as http:
            task = http.post("/api/tasks", json={"type": "echo", "payload": {"message": "hi"}}).json()
            eventually(lambda: http.get(f"/api/tasks/{task['id']}").json()["status"] == "succeeded")
    finally:
        host.stop()
        asyncio.run(delete_queue_topology(RABBITMQ_URL, host.queue))
    output = "".join(host.output)

    # Then the host's own DEBUG lines are there, but neither invocation lines nor the AMQP client's
    assert f"from queue {host.queue}: invocation " in output
    assert "Executing 'Functions." not in output
    assert not re.search(r"Connecting to: |Prepare to send |Sending <", output), output
