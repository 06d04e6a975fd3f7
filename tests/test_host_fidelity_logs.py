"""The console reads as ``func start``'s: ``[time] message`` lines, the app's records only while its
invocation runs, host.json's levels per function, print() and stderr as lines, failures as the host
flattens them."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from local.host import log_routing
from local.host.console import stderr_level
from local.host.errors import HostError, rpc_exception
from local.host.log_routing import CategoryLevels, ConsoleFilter
from local.host.logs import ConsoleFormatter
from tests.hosting import RunningHost, start_host

APP = Path(__file__).parent / "apps_fidelity" / "logs_app"
STAMP = r"\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "

# --- host.json levels, the stderr rule, the line format -------------------------------------------

LEVELS = CategoryLevels.from_host_json(
    {
        "logging": {
            "logLevel": {
                "default": "Warning",
                "Function": "Information",
                "Function.quiet": "Error",
                "Host.*.Console": "None",
            }
        }
    }
)


@pytest.mark.parametrize(
    ("category", "minimum"),
    [
        ("Function.chatty", logging.INFO),
        ("Function.chatty.User", logging.INFO),
        ("function.QUIET.User", logging.ERROR),  # categories match without regard to case
        ("Function.quieter", logging.ERROR),  # a plain prefix, as .NET's rule selector has it
        ("Host.Function.Console", logging.CRITICAL + 10),  # one * stands for any text; None is silence
        ("Host.Startup", logging.WARNING),  # the default
    ],
)
def test_the_longest_matching_category_decides(category: str, minimum: int) -> None:
    assert LEVELS.minimum(category) == minimum


def test_without_a_default_the_app_logs_at_information() -> None:
    assert CategoryLevels.from_host_json({}).minimum("Function.f.User") == logging.INFO


def test_a_level_that_is_not_one_names_the_category() -> None:
    with pytest.raises(HostError, match=r"logging\.logLevel\.Function: 'Loud' is not a log level"):
        CategoryLevels.from_host_json({"logging": {"logLevel": {"Function": "Loud"}}})


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("DeprecationWarning: old", logging.WARNING),
        ("a warning that says error", logging.WARNING),  # "warn" is checked first
        ("ValueError: bad", logging.ERROR),
        ("it FAILED", logging.ERROR),
        ("Unhandled exception in thread", logging.ERROR),
        ("just text", logging.INFO),
    ],
)
def test_a_stderr_line_gets_the_hosts_level(line: str, level: int) -> None:
    assert stderr_level(line) == level


def test_every_line_of_a_record_has_the_utc_time_with_milliseconds() -> None:
    record = logging.makeLogRecord({"msg": "first\nsecond", "created": 1714996800.25, "msecs": 250.0})
    assert ConsoleFormatter().format(record) == (
        "[2024-05-06T12:00:00.250Z] first\n[2024-05-06T12:00:00.250Z] second"
    )


def test_a_failure_reads_as_the_workers_rpc_exception() -> None:
    try:
        raise ValueError("no good")
    except ValueError as exc:
        text = rpc_exception(exc)
    lines = text.split("\n")
    assert lines[0] == "Result: Failure"
    assert lines[1] == "Exception: ValueError: no good"
    assert lines[2].startswith('Stack:   File "')
    assert "in test_a_failure_reads_as_the_workers_rpc_exception" in lines[2]
    assert lines[-1] == "."


# --- which records reach the console -------------------------------------------------------------


@pytest.fixture
def routing() -> ConsoleFilter:
    found = ConsoleFilter()
    found.configure(host_loggers=("aio_pika",))
    found.configure_app(LEVELS, debug_logging=False)
    return found


def _record(name: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.makeLogRecord({"name": name, "levelno": level, "msg": "m"})


@pytest.mark.parametrize(
    ("name", "level", "shown"),
    [
        ("root", logging.INFO, True),
        ("fidelity.app", logging.WARNING, True),
        ("root", logging.DEBUG, False),  # below the worker's INFO
        ("azure.functions", logging.ERROR, False),  # a system log of the worker
        ("azure_functions_worker.dispatcher", logging.ERROR, False),
    ],
)
def test_during_an_invocation_the_apps_records_follow_the_worker(
    routing: ConsoleFilter, name: str, level: int, shown: bool
) -> None:
    log_routing.started("inv-1", "chatty")
    token = log_routing.enter("inv-1")
    try:
        assert routing.filter(_record(name, level)) is shown
    finally:
        log_routing.leave(token)
        log_routing.ended("inv-1")


def test_outside_an_invocation_only_the_hosts_records_pass(routing: ConsoleFilter) -> None:
    assert not routing.filter(_record("root", logging.ERROR))
    assert routing.filter(_record("aio_pika.robust_connection", logging.WARNING))
    assert routing.filter(_record("local.host.runner", logging.DEBUG))


def test_a_finished_invocations_records_are_dropped(routing: ConsoleFilter) -> None:
    token = log_routing.enter("inv-gone")  # a task that outlived its invocation
    try:
        assert not routing.filter(_record("root", logging.ERROR))
    finally:
        log_routing.leave(token)


def test_debug_logging_lowers_the_workers_floor_only(routing: ConsoleFilter) -> None:
    routing.configure_app(CategoryLevels(default=logging.DEBUG), debug_logging=True)
    log_routing.started("inv-2", "f")
    token = log_routing.enter("inv-2")
    try:
        assert routing.filter(_record("root", logging.DEBUG))
    finally:
        log_routing.leave(token)
        log_routing.ended("inv-2")


# --- the console of a running host ---------------------------------------------------------------


@pytest.fixture(scope="module")
def console() -> str:
    """The output of a host of the logs app that served chatty, quiet, threads and boom once each."""
    host: RunningHost = start_host(APP, settings={"VALKEY_URL": "unused"})
    try:
        with host.client() as http:
            for route in ("chatty", "quiet", "threads"):
                assert http.get(f"/api/{route}").status_code == 200
            assert http.get("/api/boom").status_code == 500
    finally:
        host.stop()
    return "".join(host.output)


def _lines(output: str) -> list[str]:
    """The log lines, their time stamps checked and taken off."""
    found = []
    for line in output.splitlines():
        if re.match(STAMP, line):
            found.append(re.sub(f"^{STAMP}", "", line))
    return found


def test_records_logged_and_printed_read_as_bare_lines(console: str) -> None:
    lines = _lines(console)
    assert "chatty info" in lines
    assert "chatty warning from a named logger" in lines
    assert "chatty printed" in lines
    assert "chatty says it failed on stderr" in lines
    # A record's traceback follows it, line by line
    handled = lines.index("chatty handled an error")
    assert lines[handled + 1] == "Traceback (most recent call last):"
    assert lines[handled + 4] == "KeyError: 'looked up'"
    # Below INFO, and the worker's system loggers, never reach the console
    assert "chatty debug" not in console
    assert "chatty sdk error" not in console


def test_host_json_quiets_one_function_and_its_invocation_lines(console: str) -> None:
    lines = _lines(console)
    assert "quiet warning" in lines
    assert "quiet info" not in console
    assert "Executing 'Functions.quiet'" not in console
    assert any(line.startswith("Executing 'Functions.chatty'") for line in lines)


def test_records_of_threads_and_tasks_follow_their_invocation(console: str) -> None:
    lines = _lines(console)
    assert "from a task the function started" in lines
    assert "from a thread that names its invocation" in lines
    assert "from a thread of its own" not in console


def test_a_failure_is_the_executed_line_then_the_flattened_exception(console: str) -> None:
    lines = _lines(console)
    executed = next(
        i for i, line in enumerate(lines) if line.startswith("Executed 'Functions.boom' (Failed, Id=")
    )
    assert re.fullmatch(
        r"Executed 'Functions\.boom' \(Failed, Id=[0-9a-f-]{36}, Duration=\d+ms\)", lines[executed]
    )
    assert lines[executed + 1] == (
        "System.Private.CoreLib: Exception while executing function: Functions.boom."
        " System.Private.CoreLib: Result: Failure"
    )
    assert lines[executed + 2] == "Exception: ValueError: boom went the function"
    assert lines[executed + 3].startswith("Stack:   File ")
    end = lines.index(".", executed)
    assert 'function_app.py", line' in lines[end - 2]
    assert lines[end - 2].endswith(", in boom")
