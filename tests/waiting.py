"""Waiting for something a test set in motion: one helper for blocking tests, one for async ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def eventually(
    check: Callable[[], object], within: float = 15.0, what: str = "", interval: float = 0.05
) -> None:
    """Wait until ``check()`` is truthy; fail naming ``what`` and what it last returned."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return
        time.sleep(interval)
    raise AssertionError(f"{what or 'the condition'} not reached within {within}s (last: {last!r})")


async def until(
    check: Callable[[], object], within: float = 5.0, what: str = "", interval: float = 0.005
) -> None:
    """Wait on the running loop until ``check()`` is truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    last: object = None
    while not (last := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'the condition'} not reached within {within}s (last: {last!r})")
        await asyncio.sleep(interval)


class Clock:
    """A clock a test moves: the processor's notion of now, so a backoff need not be slept through."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def reach(self, when: float | None) -> None:
        """Move forward to ``when`` (never back)."""
        if when is not None:
            self.now = max(self.now, when)
