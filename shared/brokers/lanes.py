"""Priority lanes: a queue (and a queue-triggered function) per priority, behind one broker.

Service Bus has no message priority, and a RabbitMQ priority queue still hands a consumer what it has
prefetched first; a lane per level means the same thing on both brokers: a ``high`` task waits only
behind other ``high`` tasks, and in Azure each lane's function scales out on its own queue's depth
(Flex Consumption scales every queue-triggered function independently).

The ``normal`` lane is ``TASKS_QUEUE`` itself (``tasks``), so an app that never says a priority uses
the queue it always had; ``high`` and ``low`` are ``tasks.high`` and ``tasks.low``. Each lane has its
own wait queues and dead-letter queue; :class:`Lanes` routes each message by its ``priority`` and
reads or drains every lane where the contract speaks of the whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from shared.brokers.base import Backlog, Broker, OutgoingMessage

#: The priorities, most urgent first; a task says none and is ``normal``.
PRIORITIES = ("high", "normal", "low")
NORMAL = "normal"


def lane_queue(queue: str, priority: str) -> str:
    """The queue of ``priority``'s lane: ``queue`` itself for normal, else ``<queue>.<priority>``."""
    return queue if priority == NORMAL else f"{queue}.{priority}"


class Lanes(Broker):
    """One broker per priority lane, as one broker: each message goes to its ``priority``'s lane."""

    def __init__(self, lanes: Mapping[str, Broker]) -> None:
        if set(lanes) != set(PRIORITIES):
            raise ValueError(f"a broker for each of {', '.join(PRIORITIES)} is needed")
        self._lanes = dict(lanes)
        normal = self._lanes[NORMAL]
        self.system = normal.system
        self.queue = normal.queue

    def lane(self, priority: str) -> Broker:
        return self._lanes.get(priority, self._lanes[NORMAL])

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        for priority, routed in _by_lane(messages).items():
            await self.lane(priority).send_batch(routed)

    async def dead_letter(self, messages: Sequence[OutgoingMessage]) -> None:
        for priority, routed in _by_lane(messages).items():
            await self.lane(priority).dead_letter(routed)

    async def drain_dead_letters(self, decide: Callable[[OutgoingMessage], Awaitable[bool]]) -> None:
        for priority in PRIORITIES:

            async def in_lane(letter: OutgoingMessage, priority: str = priority) -> bool:
                # A letter put back (a failed redrive) returns to the lane it came from.
                return await decide(replace(letter, priority=priority))

            await self._lanes[priority].drain_dead_letters(in_lane)

    async def backlog(self) -> Backlog:
        """The lanes' counts added up; ``lanes`` gives each lane's own."""
        found = await asyncio.gather(*(self._lanes[p].backlog() for p in PRIORITIES))
        scheduled = [b.scheduled for b in found]
        return Backlog(
            self.queue,
            active=sum(b.active for b in found),
            dead_lettered=sum(b.dead_lettered for b in found),
            scheduled=None if any(s is None for s in scheduled) else sum(s or 0 for s in scheduled),
            lanes={p: b.active for p, b in zip(PRIORITIES, found, strict=True)},
        )

    async def close(self) -> None:
        errors = []
        for broker in self._lanes.values():
            try:
                await broker.close()
            except Exception as exc:  # close every lane; the first failure is raised after
                errors.append(exc)
        if errors:
            raise errors[0]


def _by_lane(messages: Sequence[OutgoingMessage]) -> dict[str, list[OutgoingMessage]]:
    routes: dict[str, list[OutgoingMessage]] = {}
    for message in messages:
        routes.setdefault(message.priority, []).append(message)
    return routes
