"""Riding out a dependency's outage: retry with backoff for a while, and log the outage once.

While Valkey cannot be reached, a delivery is not the task's fault: the processor holds it and
tries again (its trigger stops taking more work meanwhile) instead of counting a failed attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.errors import TasklaneError
from shared.platform.backoff import backoff_delay

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outage:
    """One dependency's outage as the log tells it: one WARNING when it starts, one when it ends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._since: float | None = None
        self._last = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed_within(self, seconds: float) -> bool:
        """Whether the last call failed less than ``seconds`` ago (and none has succeeded since)."""
        return self._since is not None and time.monotonic() - self._last < seconds

    def failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._last = time.monotonic()
        if self._since is None:
            self._since = time.monotonic()
            log.warning("%s is unreachable: %s", self.name, exc)

    def recovered(self) -> None:
        if self._since is None:
            return
        log.warning(
            "%s is reachable again after %.1fs (%d calls failed meanwhile)",
            self.name,
            time.monotonic() - self._since,
            self._failures,
        )
        self._since, self._failures = None, 0


async def patiently(
    call: Callable[[], Awaitable[T]],
    outage: Outage,
    errors: tuple[type[TasklaneError], ...],
    patience: float,
) -> T:
    """``call()``, tried again with backoff (0.2 s doubling to 5 s) on ``errors`` for up to
    ``patience`` seconds; the last error is raised when it runs out."""
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        try:
            result = await call()
        except errors as exc:
            outage.failed(exc)
            attempt += 1
            delay = backoff_delay(attempt, random.random(), base=0.2, cap=5.0)
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            continue
        outage.recovered()
        return result
