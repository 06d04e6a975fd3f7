"""timerTrigger: past-due rule and settings from tables; firing, monitor and singleton lock on Azurite."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.host.errors import HostError, IndexingError
from local.host.indexing import Binding, IndexedFunction
from local.host.invoker import Invoker
from local.host.ncrontab import parse_schedule
from local.host.settings import HostConfig
from local.host.triggers import ListenerContext
from local.host.triggers.blob_lease import HOSTS_CONTAINER, SingletonOptions, storage_connection_string
from local.host.triggers.timer import NEVER, ScheduleStatus, TimerListener, check_past_due

# Short enough for tests to see a takeover; the host.json minimum (15 s) applies to real hosts.
FAST = SingletonOptions(listener_lock_period=15, recovery_polling_interval=0.2)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 5, 6, hour, minute, second, tzinfo=UTC)


def status(last: datetime, next_: datetime, last_updated: datetime) -> ScheduleStatus:
    return ScheduleStatus(last, next_, last_updated)


NOW = at(12, 7, 30)


@pytest.mark.parametrize(
    ("stored", "expected", "changed", "past_due"),
    [
        # never recorded: initialise from now, not past due
        (None, status(NEVER, at(12, 10), NOW), True, False),
        # the recorded Next has passed: past due, status kept
        (status(at(12, 0), at(12, 5), at(12, 0)), status(at(12, 0), at(12, 5), at(12, 0)), False, True),
        (status(at(12, 5), at(12, 10), at(12, 5)), status(at(12, 5), at(12, 10), at(12, 5)), False, False),
        # never fired yet: Next was computed from LastUpdated
        (status(NEVER, at(12, 5), at(12, 1)), status(NEVER, at(12, 5), at(12, 1)), False, True),
        # written for another schedule, its Next long gone: recomputed from now, not past due
        (status(at(11, 0), at(11, 30), at(11, 0)), status(NEVER, at(12, 10), NOW), True, False),
        # written for another schedule, still ahead: recomputed from Last
        (status(at(12, 5), at(12, 30), at(12, 5)), status(NEVER, at(12, 10), at(12, 5)), True, False),
        # nothing to compute from: from now
        (status(NEVER, at(12, 5), NEVER), status(NEVER, at(12, 10), NOW), True, False),
    ],
)
def test_past_due_is_decided_as_the_schedule_monitor_does(
    stored: ScheduleStatus | None, expected: ScheduleStatus, changed: bool, past_due: bool
) -> None:
    # Given a status blob (or none) and a five-minute schedule / When the timer starts at 12:07:30
    result = check_past_due(stored, NOW, parse_schedule("0 */5 * * * *"))

    # Then the status, whether to write it back and whether to run at once are the host's
    assert result == (expected, changed, past_due)


def test_a_status_written_by_the_dotnet_host_is_read() -> None:
    document = {
        "Last": "2024-05-06T12:05:00.0012345+00:00",
        "Next": "2024-05-06T14:10:00+02:00",
        "LastUpdated": "0001-01-01T00:00:00+01:00",
    }

    read = ScheduleStatus.from_json(document)

    assert read == status(at(12, 5) + timedelta(microseconds=1234), at(12, 10), NEVER)
    assert ScheduleStatus.from_json(read.to_json()) == read
    assert read.to_json()["LastUpdated"] == "0001-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("UseDevelopmentStorage=true", "UseDevelopmentStorage=true"),
        ("UseDevelopmentStorage=True;", "UseDevelopmentStorage=true"),  # .NET takes any case; the SDK not
        ("AccountName=a;AccountKey=b", "AccountName=a;AccountKey=b"),
    ],
)
def test_the_storage_setting_is_made_readable_for_the_sdk(value: str, expected: str) -> None:
    assert storage_connection_string({"AzureWebJobsStorage": value}) == expected


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({}, SingletonOptions(60.0, 60.0)),
        ({"listenerLockPeriod": "00:00:20", "listenerLockRecoveryPollingInterval": "00:00:30"}, (20.0, 30.0)),
        ({"listenerLockPeriod": "00:00:10"}, "between 00:00:15 and 00:01:00"),
        ({"listenerLockPeriod": "00:02:00"}, "between 00:00:15 and 00:01:00"),
        ({"listenerLockRecoveryPollingInterval": "00:00:05"}, "00:00:15 or longer"),
    ],
)
def test_singleton_options_come_from_host_json(section: dict[str, str], expected: object) -> None:
    if isinstance(expected, str):
        with pytest.raises(HostError, match=expected):
            SingletonOptions.from_host_json({"singleton": section})
        return
    options = SingletonOptions.from_host_json({"singleton": section})
    assert (options.listener_lock_period, options.recovery_polling_interval) == tuple(
        expected if isinstance(expected, tuple) else (60.0, 60.0)
    )


@dataclass
class Calls:
    """What a timer function saw: when it ran and the TimerRequest it got."""

    seen: list[tuple[datetime, TimerRequest]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, timer: TimerRequest) -> None:
        self.seen.append((datetime.now(UTC), timer))
        self.arrived.set()

    @property
    def seconds(self) -> list[datetime]:
        return [moment.replace(microsecond=0) for moment, _ in self.seen]

    async def wait_for(self, count: int, within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while len(self.seen) < count:
                self.arrived.clear()
                await self.arrived.wait()


def timer_function(
    body: Callable[..., Any], schedule: str, *, name: str = "tick", **flags: Any
) -> IndexedFunction:
    """An indexed timer function as the worker's indexing would produce it."""
    trigger = Binding("timer", "timerTrigger", "IN", {"schedule": schedule, **flags})
    return IndexedFunction(name, trigger, (trigger,), body, Path("."))


def recording(calls: Calls) -> Callable[..., Any]:
    async def tick(timer: func.TimerRequest) -> None:
        assert isinstance(timer, TimerRequest)  # the concrete class, as the worker passes
        calls.record(timer)

    return tick


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    invoker = Invoker()
    yield invoker
    invoker.close()


@pytest.fixture
def host_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def hosts_container_client(azurite_connection_string: str) -> ContainerClient:
    container = BlobServiceClient.from_connection_string(azurite_connection_string).get_container_client(
        HOSTS_CONTAINER
    )
    if not container.exists():
        container.create_container()
    return container


def context(invoker: Invoker, connection: str, host_id: str, **settings: str) -> ListenerContext:
    return ListenerContext(invoker, HostConfig(), {"AzureWebJobsStorage": connection, **settings}, host_id)


@pytest.mark.parametrize(
    ("schedule", "flags", "use_monitor"),
    [
        ("0 */5 * * * *", {}, True),  # default on
        ("0 */5 * * * *", {"useMonitor": False}, False),
        ("0 */5 * * * *", {"useMonitor": "false"}, False),  # a %Setting% resolves to a string
        ("*/30 * * * * *", {}, False),  # more than once a minute: off
        ("*/30 * * * * *", {"useMonitor": True}, False),  # ... even when asked for, as in the extension
        ("00:00:30", {}, False),
        ("00:01:00", {}, True),
    ],
)
def test_use_monitor_defaults_as_the_extension_does(
    invoker: Invoker, schedule: str, flags: dict[str, Any], use_monitor: bool
) -> None:
    fn = timer_function(recording(Calls()), schedule, **flags)

    listener = TimerListener(fn, context(invoker, "UseDevelopmentStorage=true", "h"))

    assert listener.use_monitor is use_monitor
    assert listener.describe() == f"timerTrigger (schedule {schedule})"
    assert listener.lock_id == "h/Host.Functions.tick.Listener"
    assert listener.status_path == "timers/h/Host.Functions.tick/status"


@pytest.mark.parametrize(
    ("schedule", "settings", "reason"),
    [
        ("* * * * * 7", {}, "the day-of-week field '7'"),
        ("0 */5 * * * *", {"AzureWebJobsStorage": ""}, "Missing value for AzureWebJobsStorage"),
        ("0 */5 * * * *", {"WEBSITE_TIME_ZONE": "Pacific Standard Time"}, "not an IANA time zone"),
    ],
)
def test_unusable_timers_are_indexing_errors(
    invoker: Invoker, schedule: str, settings: dict[str, str], reason: str
) -> None:
    fn = timer_function(recording(Calls()), schedule)
    ctx = context(invoker, "UseDevelopmentStorage=true", "h", **settings)

    with pytest.raises(IndexingError, match=reason) as caught:
        TimerListener(fn, ctx)
    assert caught.value.function_name == "tick"


async def test_two_hosts_fire_each_occurrence_exactly_once(
    invoker: Invoker, azurite_connection_string: str, host_id: str
) -> None:
    # Given two hosts of one app (same host id) with the same every-second timer
    calls = Calls()
    fn = timer_function(recording(calls), "* * * * * *")
    hosts = [
        TimerListener(fn, context(invoker, azurite_connection_string, host_id), singleton=FAST)
        for _ in range(2)
    ]

    # When both run for 3.5 seconds, the second one polling for the lock all along
    for host in hosts:
        await host.start()
    await asyncio.sleep(3.5)
    for host in hosts:
        await host.stop()

    # Then each second fired once in total
    assert len(calls.seconds) >= 3
    assert len(set(calls.seconds)) == len(calls.seconds), calls.seconds
    assert all(not timer.past_due and timer.schedule_status == {} for _, timer in calls.seen)


async def test_a_second_host_takes_over_when_the_first_stops(
    invoker: Invoker, azurite_connection_string: str, host_id: str
) -> None:
    # Given host A running an every-second timer and host B waiting for its lock
    calls_a, calls_b = Calls(), Calls()
    a = TimerListener(
        timer_function(recording(calls_a), "* * * * * *"),
        context(invoker, azurite_connection_string, host_id),
        singleton=FAST,
    )
    b = TimerListener(
        timer_function(recording(calls_b), "* * * * * *"),
        context(invoker, azurite_connection_string, host_id),
        singleton=FAST,
    )
    await a.start()
    await b.start()
    await calls_a.wait_for(1)

    # When A stops (releasing the lock)
    await a.stop()
    await calls_b.wait_for(2)
    await b.stop()

    # Then B carries on, and no second fired on both
    assert calls_b.seen
    assert not set(calls_a.seconds) & set(calls_b.seconds)
    assert max(calls_a.seconds) < min(calls_b.seconds)


async def test_the_lock_is_a_lease_on_the_listener_blob_released_on_stop(
    invoker: Invoker, azurite_connection_string: str, host_id: str, hosts_container_client: ContainerClient
) -> None:
    fn = timer_function(recording(Calls()), "0 0 0 1 1 *")
    listener = TimerListener(fn, context(invoker, azurite_connection_string, host_id), singleton=FAST)
    blob = hosts_container_client.get_blob_client(f"locks/{host_id}/Host.Functions.tick.Listener")

    await listener.start()
    held = blob.get_blob_properties().lease.state
    await listener.stop()

    assert held == "leased"
    assert blob.get_blob_properties().lease.state == "available"


async def test_run_on_startup_fires_at_once(
    invoker: Invoker, host_id: str, azurite_connection_string: str
) -> None:
    # Given a yearly timer marked runOnStartup, storage named the way the emulator profile does
    calls = Calls()
    fn = timer_function(recording(calls), "0 0 0 1 1 *", runOnStartup=True)
    listener = TimerListener(fn, context(invoker, "UseDevelopmentStorage=true", host_id))

    # When the host starts
    await listener.start()
    await calls.wait_for(1, within=2.0)
    await asyncio.sleep(0.3)
    await listener.stop()

    # Then it ran once, not as past due
    assert len(calls.seen) == 1
    timer = calls.seen[0][1]
    assert timer.past_due is False
    assert timer.schedule == {"AdjustForDST": True}


def _write_status(container: ContainerClient, host_id: str, document: dict[str, str]) -> None:
    blob = container.get_blob_client(f"timers/{host_id}/Host.Functions.tick/status")
    blob.upload_blob(json.dumps(document).encode(), overwrite=True)


def _read_status(container: ContainerClient, host_id: str) -> ScheduleStatus:
    blob = container.get_blob_client(f"timers/{host_id}/Host.Functions.tick/status")
    return ScheduleStatus.from_json(json.loads(blob.download_blob().readall()))


async def test_a_missed_occurrence_runs_at_once_as_past_due(
    invoker: Invoker, azurite_connection_string: str, host_id: str, hosts_container_client: ContainerClient
) -> None:
    # Given a five-minute timer whose status says it last ran 20 minutes ago
    schedule = parse_schedule("0 */5 * * * *")
    last = datetime.now(UTC) - timedelta(minutes=20)
    missed = ScheduleStatus(last, schedule.next_after(last), last)
    _write_status(hosts_container_client, host_id, missed.to_json())
    calls = Calls()
    listener = TimerListener(
        timer_function(recording(calls), "0 */5 * * * *"),
        context(invoker, azurite_connection_string, host_id),
    )

    # When the host starts
    await listener.start()
    await calls.wait_for(1, within=2.0)
    await listener.stop()

    # Then the first invocation is past due and sees the missed status; the blob moves on
    timer = calls.seen[0][1]
    assert timer.past_due is True
    assert timer.schedule_status == missed.to_json()
    updated = _read_status(hosts_container_client, host_id)
    assert updated.last > missed.next
    assert updated.next == schedule.next_after(updated.last)
    assert updated.next > datetime.now(UTC)


async def test_a_status_on_schedule_does_not_fire_early(
    invoker: Invoker, azurite_connection_string: str, host_id: str, hosts_container_client: ContainerClient
) -> None:
    # Given a yearly timer whose recorded Next is still ahead
    schedule = parse_schedule("0 0 0 1 1 *")
    last = datetime.now(UTC) - timedelta(days=1)
    on_time = ScheduleStatus(last, schedule.next_after(last), last)
    _write_status(hosts_container_client, host_id, on_time.to_json())
    calls = Calls()
    listener = TimerListener(
        timer_function(recording(calls), "0 0 0 1 1 *"), context(invoker, azurite_connection_string, host_id)
    )

    # When the host starts and runs a while
    await listener.start()
    await asyncio.sleep(0.5)
    await listener.stop()

    # Then nothing ran and the status is untouched
    assert calls.seen == []
    assert _read_status(hosts_container_client, host_id) == on_time


async def test_a_failing_function_does_not_stop_the_schedule(
    invoker: Invoker, azurite_connection_string: str, host_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a sync timer function that raises on its first run
    runs: list[datetime] = []

    def tick(timer: func.TimerRequest) -> None:
        runs.append(datetime.now(UTC))
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    listener = TimerListener(
        timer_function(tick, "* * * * * *"), context(invoker, azurite_connection_string, host_id)
    )

    # When it runs for a few occurrences
    with caplog.at_level(logging.ERROR, logger="local.host.invoker"):
        await listener.start()
        await asyncio.sleep(2.6)
        await listener.stop()

    # Then the failure was logged and later occurrences still ran
    assert len(runs) >= 2
    assert "first run fails" in caplog.text
