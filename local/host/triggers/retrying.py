"""Start a listener whose server is down later, in the background, as the Functions host does.

The WebJobs host wraps every listener: when one fails to start it logs "The listener for function
'Functions.<name>' was unable to start." and, the Functions host allowing a partial start, keeps
retrying with randomized exponential backoff from 2 s up to 2 min while HTTP and the other
triggers run. Here only :class:`ListenerUnavailableError` is retried.

An :class:`IndexingError` at start (a RabbitMQ queue that does not exist) is what the WebJobs host
meets while indexing: "Error indexing method", the function "failed indexing and will be disabled",
never retried. Once retrying (the broker was down), a missing queue is waited for like the broker.
Any other :class:`HostError` is a configuration a retry cannot fix, and still stops the host.
"""

from __future__ import annotations

import asyncio
import logging
import random

from local.host.errors import HostError, IndexingError, ListenerUnavailableError
from local.host.triggers import Listener
from shared.platform.backoff import backoff_delay

log = logging.getLogger(__name__)

#: The WebJobs host's retry interval bounds for a listener that failed to start.
MIN_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 120.0


class RetryingListener:
    """Wraps a listener: an unreachable server at start is logged and retried, never fatal."""

    def __init__(
        self, inner: Listener, *, min_delay: float = MIN_RETRY_SECONDS, max_delay: float = MAX_RETRY_SECONDS
    ) -> None:
        self.function = inner.function
        self._inner = inner
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._started = False
        self._retrying: asyncio.Task[None] | None = None

    @property
    def short_name(self) -> str:
        """The name the Functions host logs for the function, ``Functions.<name>``."""
        return f"Functions.{self.function.name}"

    def describe(self) -> str:
        """The wrapped listener's line for the function list."""
        return self._inner.describe()

    async def start(self) -> None:
        """Start the listener; if its server cannot be reached, log it and retry in the background."""
        try:
            await self._inner.start()
        except ListenerUnavailableError as exc:
            log.error("The listener for function '%s' was unable to start. %s", self.short_name, exc)
            self._retrying = asyncio.create_task(self._retry(), name=f"retry start {self.short_name}")
            return
        except IndexingError as exc:
            exc.report(log)
            return
        self._started = True

    async def stop(self) -> None:
        """Give up retrying, and stop the listener if it started."""
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)
        if self._started:
            self._started = False
            await self._inner.stop()

    async def _retry(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            delay = backoff_delay(attempt, random.random(), base=self._min_delay, cap=self._max_delay)
            await asyncio.sleep(delay)
            log.info("Retrying to start listener for function '%s' (Attempt %d)", self.short_name, attempt)
            try:
                await self._inner.start()
            except (ListenerUnavailableError, IndexingError) as exc:
                reason = exc.reason if isinstance(exc, IndexingError) else str(exc)
                log.warning(
                    "The listener for function '%s' is still unable to start. %s", self.short_name, reason
                )
                continue
            except HostError as exc:
                log.error(
                    "The listener for function '%s' cannot start; not retried: %s", self.short_name, exc
                )
                return
            self._started = True
            log.info(
                "Listener successfully started for function '%s' after %d retries.", self.short_name, attempt
            )
            return
