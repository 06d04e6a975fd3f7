"""``timerTrigger``: invoke a function on its NCRONTAB or TimeSpan schedule, as the timer extension.

Kept from the extension (``TimerListener``, ``ScheduleMonitor``, ``StorageScheduleMonitor``) and the
WebJobs SDK's ``SingletonListener``:

- The listener is a singleton: of the hosts sharing a host id, only the one holding the lease on
  ``locks/{hostId}/Host.Functions.{name}.Listener`` runs the schedule; the others try again every
  recovery interval and take over, past-due check included, when it is released or runs out.
- With ``useMonitor`` (default true, forced off for schedules that fire more than once a minute)
  ``{Last, Next, LastUpdated}`` is kept in ``timers/{hostId}/Host.Functions.{name}/status``. At
  start, a recorded ``Next`` that has passed makes an immediate past-due invocation (ahead of
  ``runOnStartup``); a status written for another schedule is recomputed and is not past due.
- ``Next`` is computed from the invocation time (from ``Next`` itself if the timer woke early), and
  a failing function never stops the schedule.

Times are UTC, or the IANA zone named by ``WEBSITE_TIME_ZONE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.functions.timer import TimerRequest  # what the worker builds; func.TimerRequest is abstract
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from local.host.errors import FunctionFailedError, HostError, IndexingError, ListenerUnavailableError
from local.host.indexing import IndexedFunction
from local.host.ncrontab import Schedule, ScheduleError, parse_schedule
from local.host.settings import parse_flag
from local.host.triggers import ListenerContext
from local.host.triggers.blob_lease import (
    BlobLeaseLock,
    SingletonOptions,
    hosts_container,
    storage_connection_string,
)

log = logging.getLogger(__name__)

TIME_ZONE_SETTING = "WEBSITE_TIME_ZONE"
#: .NET's ``default(DateTime)``: the status value for "never".
NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ScheduleStatus:
    """The last occurrence, the expected next one and when they were computed (aware, UTC)."""

    last: datetime
    next: datetime
    last_updated: datetime

    def to_json(self) -> dict[str, str]:
        """The status blob's (and ``TimerRequest.schedule_status``'s) form, ISO 8601 with offsets."""
        return {"Last": _iso(self.last), "Next": _iso(self.next), "LastUpdated": _iso(self.last_updated)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ScheduleStatus:
        """Read a status as the .NET host writes it; raises ``ValueError``/``KeyError`` when unreadable."""
        return cls(_instant(document["Last"]), _instant(document["Next"]), _instant(document["LastUpdated"]))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat() if moment != NEVER else "0001-01-01T00:00:00+00:00"


def _instant(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.year == 1:  # "never", whatever offset the writer's zone gave it
        return NEVER
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_past_due(
    status: ScheduleStatus | None, now: datetime, schedule: Schedule
) -> tuple[ScheduleStatus, bool, bool]:
    """``(status, changed, past_due)`` at start, as ``ScheduleMonitor.CheckPastDueAsync`` decides.

    ``changed`` says the status must be written back: there was none, or it was computed for a
    different schedule (then it is recomputed, from ``now`` if it would be in the past, so a
    schedule edit never counts as a missed occurrence).
    """
    if status is None:
        return ScheduleStatus(NEVER, schedule.next_after(now), now), True, False
    changed = False
    basis = next((t for t in (status.last, status.last_updated) if t != NEVER), now)
    expected = schedule.next_after(basis)
    if status.next != expected:
        if now > expected:
            basis, expected = now, schedule.next_after(now)
        status, changed = ScheduleStatus(NEVER, expected, basis), True
    return status, changed, now > status.next


class _Start(enum.Enum):
    PAST_DUE = "IsPastDue"
    RUN_ON_STARTUP = "RunOnStartup"
    SCHEDULED = "Scheduled"


class TimerListener:
    """Runs one timer function while this host holds its singleton lock."""

    def __init__(
        self, fn: IndexedFunction, ctx: ListenerContext, *, singleton: SingletonOptions | None = None
    ):
        self.function = fn
        self._invoker = ctx.invoker
        try:
            tz = _time_zone(ctx.environ)
            self._schedule = parse_schedule(str(fn.trigger.get("schedule") or ""), tz)
            self._connection = storage_connection_string(ctx.environ)
            self._singleton = singleton or SingletonOptions.from_host_json(ctx.host_config.document)
            self.run_on_startup = parse_flag(fn.trigger.get("runOnStartup"), False, "runOnStartup")
            use_monitor = parse_flag(fn.trigger.get("useMonitor"), True, "useMonitor")
        except (ScheduleError, HostError) as exc:
            raise IndexingError(fn.name, str(exc)) from exc
        # The extension turns monitoring off for sub-minute schedules even when it was asked for.
        self.use_monitor = use_monitor and not self._schedule.sub_minute
        timer_name = f"Host.Functions.{fn.name}"  # the function's full name in the Functions host
        self.lock_id = f"{ctx.host_id}/{timer_name}.Listener"
        self.status_path = f"timers/{ctx.host_id}/{timer_name}/status"
        self._stopping = asyncio.Event()
        self._halt = asyncio.Event()  # stop, or the lock was lost: leave the schedule loop
        self._status = ScheduleStatus(NEVER, NEVER, NEVER)
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        self._lock: BlobLeaseLock | None = None
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"timerTrigger (schedule {self._schedule.expression})"

    async def start(self) -> None:
        """Take the lock if free and start the schedule; otherwise keep trying in the background."""
        self._service, self._container = hosts_container(self._connection)
        self._lock = BlobLeaseLock(
            self._container, self.lock_id, self._singleton.listener_lock_period, self._halt.set
        )
        try:
            start = await self._begin() if await self._lock.try_acquire() else None
        except AzureError as exc:
            await self._close()
            reason = f"Timer '{self.function.name}': storage cannot be used ({exc})"
            # No answer at all (Azurite not started yet) may pass; an answer refusing us will not.
            if isinstance(exc, ServiceRequestError):
                raise ListenerUnavailableError(reason) from exc
            raise HostError(reason) from exc
        if start is None:
            log.info("Timer '%s': %s is held by another host", self.function.name, self.lock_id)
        self._task = asyncio.create_task(self._supervise(start), name=f"timer {self.function.name}")

    async def stop(self) -> None:
        """Cancel the wait, let a running invocation finish, release the lock and close the client."""
        self._stopping.set()
        self._halt.set()
        if self._task is not None:
            await self._task
        await self._close()

    async def _close(self) -> None:
        if self._lock is not None:
            await self._lock.release()
        if self._service is not None:
            await self._service.close()
            self._service = None

    async def _supervise(self, start: _Start | None) -> None:
        try:
            while not self._stopping.is_set():
                if start is None:
                    start = await self._recover()
                    continue
                await self._run(start)
                start = None
                if not self._stopping.is_set():  # the lock was lost: back to waiting for it
                    assert self._lock is not None
                    await self._lock.release()
                    self._halt.clear()
        except Exception:
            log.exception("Timer '%s' stopped after an unexpected error", self.function.name)

    async def _recover(self) -> _Start | None:
        assert self._lock is not None
        if await _wait(self._stopping, self._singleton.recovery_polling_interval):
            return None
        try:
            if await self._lock.try_acquire():
                log.info("Timer '%s' took over the schedule (%s)", self.function.name, self.lock_id)
                return await self._begin()
        except AzureError as exc:
            log.warning("Timer '%s': storage not reachable (%s)", self.function.name, exc)
            await self._lock.release()
        return None

    async def _begin(self) -> _Start:
        """Read (or initialise) the schedule status and decide whether to run at once."""
        now = datetime.now(UTC)
        past_due = False
        if self.use_monitor:
            status, changed, past_due = check_past_due(await self._read_status(), now, self._schedule)
            if changed:
                await self._write_status(status)
        else:
            status = ScheduleStatus(NEVER, self._schedule.next_after(now), NEVER)
        self._status = status
        log.info("Timer '%s' next runs at %s", self.function.name, _iso(status.next))
        if past_due:
            return _Start.PAST_DUE
        return _Start.RUN_ON_STARTUP if self.run_on_startup else _Start.SCHEDULED

    async def _run(self, start: _Start) -> None:
        reason = start
        while True:
            if reason is _Start.SCHEDULED:
                if await self._wait_until(self._status.next):
                    return
            elif self._halt.is_set():
                return
            await self._fire(reason)
            reason = _Start.SCHEDULED

    async def _wait_until(self, when: datetime) -> bool:
        """Sleep until ``when`` by the wall clock (never early); ``True`` if halted meanwhile."""
        while (delay := (when - datetime.now(UTC)).total_seconds()) > 0:
            if await _wait(self._halt, delay):
                return True
        return self._halt.is_set()

    async def _fire(self, reason: _Start) -> None:
        assert self._lock is not None
        if not self._lock.held:  # renewals failed for a whole period: another host may own it now
            log.warning("Timer '%s': lock %s ran out; not firing", self.function.name, self.lock_id)
            self._halt.set()
            return
        invoked_at = datetime.now(UTC)
        if reason is not _Start.SCHEDULED:
            log.info("Timer '%s' runs now (%s)", self.function.name, reason.value)
        request = TimerRequest(
            past_due=reason is _Start.PAST_DUE,
            schedule_status=self._status.to_json() if self.use_monitor else None,
            schedule={"AdjustForDST": self._schedule.adjust_for_dst},
        )
        try:
            await self._invoker.invoke(self.function, {self.function.trigger.name: request})
        except FunctionFailedError:
            pass  # the invoker logged it; as in the extension, a failure never stops the schedule
        except Exception:
            log.exception("Error occurred during scheduled invocation for '%s'", self.function.name)
        # Woken a little early, the occurrence itself is the basis, or Next would repeat it.
        basis = invoked_at
        if reason is _Start.SCHEDULED and self._status.next > invoked_at:
            basis = self._status.next
        self._status = ScheduleStatus(basis, self._schedule.next_after(basis), basis)
        if self.use_monitor:
            await self._write_status(self._status)

    async def _read_status(self) -> ScheduleStatus | None:
        assert self._container is not None
        try:
            stream = await self._container.get_blob_client(self.status_path).download_blob()
            raw = await stream.readall()
        except ResourceNotFoundError:
            return None
        try:
            return ScheduleStatus.from_json(json.loads(raw.decode("utf-8-sig")))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Timer '%s': unreadable status %r (%s)", self.function.name, raw, exc)
            return None

    async def _write_status(self, status: ScheduleStatus) -> None:
        """Best effort, as in the extension: a failed write is logged and the timer goes on."""
        assert self._container is not None
        data = json.dumps(status.to_json()).encode()
        blob = self._container.get_blob_client(self.status_path)
        try:
            try:
                await blob.upload_blob(data, overwrite=True)
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):
                    await self._container.create_container()
                await blob.upload_blob(data, overwrite=True)
        except AzureError as exc:
            log.error("Function '%s' failed to update the timer trigger status (%s)", self.function.name, exc)


async def _wait(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; ``True`` if it was set."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _time_zone(environ: Mapping[str, str]) -> tzinfo:
    name = environ.get(TIME_ZONE_SETTING, "").strip()
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HostError(
            f"{TIME_ZONE_SETTING}='{name}' is not an IANA time zone name such as Europe/Berlin"
        ) from exc
