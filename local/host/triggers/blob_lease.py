"""The host's storage container and the singleton lock the WebJobs SDK keeps there as a blob lease.

Like the SDK's ``BlobLeaseDistributedLockManager``, a lock is a lease on the blob
``locks/{lockId}`` in the container ``azure-webjobs-hosts`` of ``AzureWebJobsStorage``; the blob is
created empty when missing, and the lease is renewed at half its period. A listener lock
(``SingletonMode.Listener``, what the timer trigger uses) has a 60 s period by default, and a host
that does not get it tries again every 60 s (host.json ``singleton`` section).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import AsyncioRequestsTransport
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient, ContainerClient, ExponentialRetry

from local.host.errors import HostError
from local.host.settings import parse_timespan

log = logging.getLogger(__name__)

STORAGE_SETTING = "AzureWebJobsStorage"
HOSTS_CONTAINER = "azure-webjobs-hosts"
# Azure Storage accepts lease periods of 15 to 60 seconds; the SDK validates host.json against them.
_MIN_LEASE, _MAX_LEASE = 15.0, 60.0
_MIN_RENEWAL_DELAY = 1.0


@dataclass(frozen=True)
class SingletonOptions:
    """``singleton`` in host.json: the listener lock's lease period and recovery polling interval."""

    listener_lock_period: float = _MAX_LEASE
    recovery_polling_interval: float = 60.0

    @classmethod
    def from_host_json(cls, document: Mapping[str, Any]) -> SingletonOptions:
        """Read and validate ``singleton.listenerLockPeriod`` / ``listenerLockRecoveryPollingInterval``."""
        section = document.get("singleton") or {}
        period = _seconds(section, "listenerLockPeriod", _MAX_LEASE)
        if not _MIN_LEASE <= period <= _MAX_LEASE:
            raise HostError("host.json singleton.listenerLockPeriod must be between 00:00:15 and 00:01:00")
        polling = _seconds(section, "listenerLockRecoveryPollingInterval", 60.0)
        if polling < _MIN_LEASE:
            raise HostError(
                "host.json singleton.listenerLockRecoveryPollingInterval must be 00:00:15 or longer"
            )
        return cls(period, polling)


def _seconds(section: Mapping[str, Any], key: str, default: float) -> float:
    raw = section.get(key)
    return default if raw is None else parse_timespan(str(raw))


def storage_connection_string(environ: Mapping[str, str]) -> str:
    """``AzureWebJobsStorage`` as azure-storage-blob reads it; a missing one is a :class:`HostError`.

    The SDK understands ``UseDevelopmentStorage=true`` (Azurite on 127.0.0.1:10000) only with a
    lowercase ``true``, while .NET accepts any case, so that form is normalised here.
    """
    value = environ.get(STORAGE_SETTING, "").strip()
    if not value:
        raise HostError(
            f"Missing value for {STORAGE_SETTING}: timer triggers keep their locks and schedule status "
            "in storage; set it (UseDevelopmentStorage=true for Azurite) in local.settings.json"
        )
    pairs = (part.split("=", 1) for part in value.split(";") if "=" in part)
    if any(
        key.strip().lower() == "usedevelopmentstorage" and v.strip().lower() == "true" for key, v in pairs
    ):
        return "UseDevelopmentStorage=true"
    return value


def hosts_container(connection_string: str) -> tuple[BlobServiceClient, ContainerClient]:
    """The service client (to close) and its ``azure-webjobs-hosts`` container client."""
    # The requests-based transport keeps aiohttp out of the host's dependencies; a timer makes a
    # handful of small requests a minute, so a worker thread per request costs nothing that matters.
    service = BlobServiceClient.from_connection_string(
        connection_string,
        transport=AsyncioRequestsTransport(),
        retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
        connection_timeout=5,
        read_timeout=10,
    )
    return service, service.get_container_client(HOSTS_CONTAINER)


class BlobLeaseLock:
    """A singleton lock: a lease on ``locks/{lock_id}``, renewed in the background while held.

    ``on_lost`` is called once when a renewal is refused (another host took the lease after ours
    expired); transient renewal failures are retried sooner, as the SDK's speed-up strategy does.
    """

    def __init__(
        self, container: ContainerClient, lock_id: str, period: float, on_lost: Callable[[], None]
    ) -> None:
        self.lock_id = lock_id
        self._blob = container.get_blob_client(f"locks/{lock_id}")
        self._container = container
        self._period = period
        self._on_lost = on_lost
        self._lease: BlobLeaseClient | None = None
        self._held_until = 0.0
        self._renewal: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """Whether the lease is ours and, by our own clock, has not yet run out."""
        return self._lease is not None and time.monotonic() < self._held_until

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; ``False`` when another host does."""
        if self._lease is not None:
            return True
        try:
            properties = await self._blob.get_blob_properties()
        except ResourceNotFoundError:
            await self._create_blob()
        else:
            # Checking first avoids a stream of 409s while another host holds the lease.
            if properties.lease.state not in ("available", "expired", "broken"):
                return False
        started = time.monotonic()
        try:
            lease = await self._blob.acquire_lease(lease_duration=int(self._period))
        except ResourceExistsError:
            return False
        self._lease = lease
        self._held_until = started + self._period
        self._renewal = asyncio.create_task(self._renew(), name=f"renew {self.lock_id}")
        log.debug("Singleton lock acquired (%s)", self.lock_id)
        return True

    async def release(self) -> None:
        """Stop renewing and release the lease; a lease already gone is not an error."""
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            await lease.release()
        except (ResourceNotFoundError, ResourceExistsError):
            pass  # the blob is gone or another host holds a new lease: nothing of ours to release
        except AzureError as exc:
            log.warning("Singleton lock %s not released (%s); it expires by itself", self.lock_id, exc)
        else:
            log.debug("Singleton lock released (%s)", self.lock_id)

    async def _create_blob(self) -> None:
        for _ in range(2):
            try:
                await self._blob.upload_blob(b"", overwrite=False)
                return
            except ResourceExistsError:
                return  # created by another host meanwhile, or leased already: acquiring decides
            except ResourceNotFoundError:
                with contextlib.suppress(ResourceExistsError):
                    await self._container.create_container()

    async def _renew(self) -> None:
        delay = self._period / 2
        while self._lease is not None:
            await asyncio.sleep(delay)
            started = time.monotonic()
            try:
                await self._lease.renew()
            except HttpResponseError as exc:
                if exc.status_code is not None and exc.status_code < 500:
                    log.error("Singleton lock %s lost: renewal refused (%s)", self.lock_id, exc.status_code)
                    self._lease = None
                    self._on_lost()
                    return
                delay = max(_MIN_RENEWAL_DELAY, delay / 2)
                log.warning("Singleton lock renewal failed for %s (%s); retrying", self.lock_id, exc)
            except AzureError as exc:  # no answer at all: try again sooner, before the lease runs out
                delay = max(_MIN_RENEWAL_DELAY, delay / 2)
                log.warning("Singleton lock renewal failed for %s (%s); retrying", self.lock_id, exc)
            else:
                self._held_until = started + self._period
                delay = self._period / 2
