"""Ack a channel's finished deliveries together: one ``multiple=True`` ack per event-loop turn.

Invocations run side by side (up to the prefetch) and many finish within the same loop turn. Acked
one by one, each costs an AMQP frame, a write and a drain, and the broker handles each. An
:class:`AckTracker` keeps the channel's delivery tags in delivery order; once per loop turn it
acks the longest finished prefix with one ``basic.ack(highest, multiple=True)`` and the finished
tags beyond a gap one by one, so a slow invocation never holds back the others' acks.

A multiple ack covers every unacked tag up to its own, so it must never reach a tag that is still
running, being retried or rejected, or left for redelivery: such a tag stays tracked, not
finished, and the walk stops there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol


class AckChannel(Protocol):
    """The one call an :class:`AckTracker` makes (``aiormq.Channel`` has it)."""

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[None]: ...


@dataclass(frozen=True)
class _Frame:
    """One ``basic.ack`` and the callers waiting for it."""

    tag: int
    multiple: bool
    waiters: list[asyncio.Future[None]]


class AckTracker:
    """The delivery tags of one channel, oldest first, and the acks of the finished ones.

    While an ack flush is being written, newly finished tags wait; the next flush carries them all.
    Under load that batches by itself; when idle, an ack goes out on the next loop turn.
    """

    def __init__(self, channel: AckChannel) -> None:
        self._channel = channel
        # An ordered set: delivery tags grow on a channel, so insertion order is delivery order.
        self._tracked: dict[int, None] = {}
        self._finished: dict[int, asyncio.Future[None]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._scheduled = False

    def delivered(self, tag: int) -> None:
        """Track a delivery, whatever becomes of it; until it finishes, no multiple ack covers it."""
        self._tracked[tag] = None

    def succeeded(self, tag: int) -> asyncio.Future[None]:
        """Mark ``tag`` finished; the future resolves once an ack covering it was written (or raises)."""
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()
        self._finished[tag] = acked
        if not self._scheduled and self._flushing is None:
            self._scheduled = True
            loop.call_soon(self._start_flush)
        return acked

    def settled(self, tag: int) -> None:
        """Forget ``tag``: it was acked or rejected on its own (a failed invocation's path)."""
        self._tracked.pop(tag, None)

    def _plan(self) -> list[_Frame]:
        """Take the finished tags out of the tracker and group them into ack frames."""
        finished, self._finished = self._finished, {}
        prefix: list[int] = []
        for tag in self._tracked:
            if tag not in finished:
                break
            prefix.append(tag)
        frames = []
        if prefix:
            waiters = [finished.pop(tag) for tag in prefix]
            frames.append(_Frame(prefix[-1], multiple=len(prefix) > 1, waiters=waiters))
        # Beyond the gap: acked one by one, as a multiple ack would cover the unfinished tag.
        for tag in sorted(finished):
            frames.append(_Frame(tag, multiple=False, waiters=[finished[tag]]))
        for tag in (*prefix, *finished):
            self._tracked.pop(tag, None)
        return frames

    def _start_flush(self) -> None:
        self._scheduled = False
        frames = self._plan()
        if not frames:
            return
        self._flushing = asyncio.get_running_loop().create_task(self._flush(frames))
        self._flushing.add_done_callback(self._flushed)

    def _flushed(self, _task: asyncio.Task[None]) -> None:
        self._flushing = None
        if self._finished:
            self._start_flush()

    async def _flush(self, frames: list[_Frame]) -> None:
        for frame in frames:
            try:
                await self._channel.basic_ack(frame.tag, multiple=frame.multiple)
            except Exception as exc:
                _settle(frame.waiters, exc)
            else:
                _settle(frame.waiters, None)


def _settle(waiters: list[asyncio.Future[None]], error: Exception | None) -> None:
    # A waiter whose invocation was cancelled (stop's grace ran out) is done already.
    for waiter in waiters:
        if waiter.done():
            continue
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(error)
