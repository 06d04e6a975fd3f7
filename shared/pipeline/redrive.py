"""Redrive: send failed or dead-lettered tasks again, with their attempts reset.

One task by id, or every task in the dead-letter queue (optionally of one type). A task is claimed
in Valkey before it is re-sent (atomic: however many redrives race, it is re-sent once), its message
leaves the dead-letter queue, and a re-send the broker refuses puts the task back as it was.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from shared.brokers import Broker, OutgoingMessage
from shared.errors import BrokerError, DecodeError, TaskNotFoundError, TaskStateError
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.store.store import Store

log = logging.getLogger(__name__)


class Redriver:
    """Re-sends failed and dead-lettered tasks through the broker."""

    def __init__(self, store: Store, broker: Broker, hooks: Hooks) -> None:
        self._store = store
        self._broker = broker
        self._hooks = hooks

    async def retry(self, task_id: str) -> None:
        """Re-send one failed or dead-lettered task; :class:`TaskNotFoundError` or
        :class:`TaskStateError` (with its status) when there is no such task to retry."""
        previous, envelope = await self._store.claim_redrive(task_id)
        if previous is None:
            raise TaskNotFoundError(f"no task {task_id}")
        if envelope is None:
            raise TaskStateError(
                f"task {task_id} is {previous}: only a failed or dead-lettered task can be retried",
                str(previous),
            )
        # Its message leaves the dead-letter queue first (a failed task has none there), so that the
        # new attempt's own dead letter, should it fail again, is never taken for the old one.
        taken: list[OutgoingMessage] = []
        try:
            await self._broker.drain_dead_letters(_of_task(task_id, taken))
            await self._resend(task_id, envelope)
        except BrokerError:
            if taken:
                await self._broker.dead_letter(taken)  # put back what the failed redrive took
            await self._store.undo_redrive(task_id, previous, envelope)
            raise
        log.info("Task %s (was %s) re-sent by a redrive", task_id, previous)

    async def redrive_all(self, task_type: str | None = None) -> int:
        """Re-send every task in the dead-letter queue (of ``task_type`` only, when given); how many.

        A message that is not a task stays; a second copy of a task already re-sent is dropped.
        """
        seen: set[str] = set()
        sent = 0

        async def decide(letter: OutgoingMessage) -> bool:
            nonlocal sent
            try:
                envelope = TaskEnvelope.decode(letter.body)
            except DecodeError:
                return False
            if task_type is not None and envelope.type != task_type:
                return False
            if envelope.id in seen:
                return True  # never redriven twice by one call
            seen.add(envelope.id)
            previous, stored = await self._store.claim_redrive(envelope.id, letter.body)
            if stored is None and previous is not None:
                return True  # re-sent already (or finished since): this copy is stale
            try:
                await self._resend(envelope.id, stored or letter.body)
            except BrokerError:
                if previous is not None:
                    await self._store.undo_redrive(envelope.id, previous, stored or letter.body)
                raise  # this letter stays in the dead-letter queue
            sent += 1
            return True

        await self._broker.drain_dead_letters(decide)
        log.info("Redrive: %d dead-lettered task(s) of type %s re-sent", sent, task_type or "any")
        return sent

    async def purge(self, task_type: str | None = None) -> int:
        """Remove every dead letter (of ``task_type`` only, when given) from the dead-letter queue; how
        many. The tasks' statuses stay: a purged task can still be retried by its id."""
        purged = 0

        async def decide(letter: OutgoingMessage) -> bool:
            nonlocal purged
            if task_type is not None:
                try:
                    if TaskEnvelope.decode(letter.body).type != task_type:
                        return False
                except DecodeError:
                    return False
            purged += 1
            return True

        await self._broker.drain_dead_letters(decide)
        log.warning("Purge: %d dead letter(s) of type %s removed", purged, task_type or "any")
        return purged

    async def _resend(self, task_id: str, envelope: bytes) -> None:
        # Back to its own lane: the envelope says which.
        priority = TaskEnvelope.decode(envelope).priority
        message = OutgoingMessage(f"{task_id}.redrive.{uuid.uuid4().hex[:8]}", envelope, priority=priority)
        with self._hooks.sending(self._broker.system, self._broker.queue, [message]) as traced:
            await self._broker.send_batch(traced)


def _of_task(task_id: str, taken: list[OutgoingMessage]) -> Callable[[OutgoingMessage], Awaitable[bool]]:
    """Takes the dead letters of ``task_id``, keeping them in ``taken``."""

    async def decide(letter: OutgoingMessage) -> bool:
        try:
            mine = TaskEnvelope.decode(letter.body).id == task_id
        except DecodeError:
            return False
        if mine:
            taken.append(letter)
        return mine

    return decide
