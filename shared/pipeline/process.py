"""Process deliveries: each one decided on its own, whatever else arrived in its batch.

Decode, skip what already finished, serve cached results, run the handler with its timeout, and
record every outcome of the invocation in one Valkey round trip. Then settle each delivery through
the broker: a failed attempt with attempts left is re-sent as a new message and the delivery is done
with; one out of attempts (or that raised :class:`~shared.pipeline.registry.PermanentError`), and a
message that is not a task at all, go to the dead-letter queue with their reason. Only when the store
or the broker cannot be reached is a delivery handed back to its trigger for redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from shared.brokers import Broker, OutgoingMessage
from shared.errors import BrokerError, DecodeError
from shared.pipeline.delivery import Decision, Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks, ProcessScope
from shared.pipeline.outcome import Attempt, Outcome, cache_key
from shared.pipeline.registry import PermanentError, Registry, TaskType
from shared.pipeline.status import TaskStatus
from shared.store.store import Store

log = logging.getLogger(__name__)

#: Application properties (Service Bus) or headers (RabbitMQ) a dead-lettered message carries; the
#: names Service Bus itself sets when it dead-letters, so both kinds read alike.
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"


@dataclass(frozen=True, slots=True)
class _Plan:
    """A decoded task at ``position`` of the deliveries, its type and its cache key when it caches."""

    position: int
    envelope: TaskEnvelope
    task_type: TaskType | None
    cache: str | None

    @classmethod
    def of(cls, position: int, envelope: TaskEnvelope, task_type: TaskType | None) -> _Plan:
        cache = cache_key(envelope.type, envelope.payload) if task_type and task_type.cache_ttl else None
        return cls(position, envelope, task_type, cache)


class Processor:
    """Runs delivered tasks through their handlers, records what happened and settles each message."""

    def __init__(self, store: Store, broker: Broker, registry: Registry, hooks: Hooks) -> None:
        self._store = store
        self._broker = broker
        self._registry = registry
        self._hooks = hooks

    async def process(self, deliveries: Sequence[Delivery]) -> list[Decision]:
        """One decision per delivery, in order.

        Raises :class:`~shared.errors.StoreError` when Valkey cannot be reached before anything was
        decided (every delivery then goes back to its broker).
        """
        with self._hooks.processing(self._broker.system, self._broker.queue, deliveries) as scope:
            return await self._process(deliveries, scope)

    async def _process(self, deliveries: Sequence[Delivery], scope: ProcessScope) -> list[Decision]:
        decisions: list[Decision | None] = [None] * len(deliveries)
        plans: list[_Plan] = []
        undecodable: list[tuple[int, str]] = []
        for position, delivery in enumerate(deliveries):
            try:
                envelope = TaskEnvelope.decode(delivery.body)
            except DecodeError as exc:
                undecodable.append((position, str(exc)))
                continue
            plans.append(_Plan.of(position, envelope, self._registry.get(envelope.type)))
        for position, reason in undecodable:
            decisions[position] = await self._undecodable(deliveries[position], reason)
        if plans:
            ids = [plan.envelope.id for plan in plans]
            with self._hooks.store_call("begin", ids):
                attempts = await self._store.begin([(plan.envelope, plan.cache) for plan in plans])
            runs = []
            for plan, attempt in zip(plans, attempts, strict=True):
                settled = _already_settled(plan.envelope, attempt)
                if settled is None:
                    runs.append(self._run_in_scope(scope, plan, attempt))
                else:
                    decisions[plan.position] = Decision(deliveries[plan.position], settled)
            outcomes = list(await asyncio.gather(*runs))
            if outcomes:
                with self._hooks.store_call("record", [o.envelope.id for o in outcomes]):
                    await self._store.record(outcomes)
                self._hooks.recorded(outcomes)
                positions = {plan.envelope.id: plan.position for plan in plans}
                for outcome, (verdict, reason) in zip(outcomes, await self._settle(outcomes), strict=True):
                    position = positions[outcome.envelope.id]
                    decisions[position] = Decision(deliveries[position], verdict, reason)
        return [d for d in decisions if d is not None]

    async def _undecodable(self, delivery: Delivery, reason: str) -> Decision:
        log.error(
            "Message %s is not a task and goes to the dead-letter queue: %s", delivery.message_id, reason
        )
        await self._store.record_undecodable(delivery.message_id, reason)
        message = OutgoingMessage(
            delivery.message_id or "undecodable",
            delivery.body,
            {DEAD_LETTER_REASON: "Undecodable", DEAD_LETTER_DESCRIPTION: reason[:1000]},
        )
        try:
            await self._broker.dead_letter([message])
        except BrokerError as exc:
            log.error("Message %s could not be dead-lettered, handed back: %s", delivery.message_id, exc)
            return Decision(delivery, Verdict.REDELIVER, str(exc))
        return Decision(delivery, Verdict.DEAD_LETTERED, reason)

    async def _run_in_scope(self, scope: ProcessScope, plan: _Plan, attempt: Attempt) -> Outcome:
        with scope.running(plan.envelope, plan.position) as task:
            outcome = await self._run(plan, attempt)
            task.finished(outcome)
            return outcome

    async def _run(self, plan: _Plan, attempt: Attempt) -> Outcome:
        envelope, task_type = plan.envelope, plan.task_type
        started = time.time()
        if task_type is None:
            log.error("Task %s has unknown type %s: dead-lettered", envelope.id, envelope.type)
            error = f"unknown task type '{envelope.type}'"
            return Outcome(envelope, started, error=error, final=True, attempt=attempt.attempts)
        if attempt.cached is not None:
            return Outcome(
                envelope,
                started,
                result=attempt.cached,
                cache=plan.cache,
                cache_ttl=task_type.cache_ttl,
                cache_hit=True,
                attempt=attempt.attempts,
            )
        clock = time.perf_counter()
        try:
            payload = task_type.validate(envelope.payload)
            async with asyncio.timeout(task_type.timeout):
                result = await task_type.handler(payload)
            encoded = msgspec.json.encode(result)
        except Exception as exc:
            final = isinstance(exc, PermanentError) or attempt.attempts >= task_type.max_attempts
            error = _describe(exc, task_type)
            log.warning(
                "Task %s attempt %d/%d failed%s: %s",
                envelope.id,
                attempt.attempts,
                task_type.max_attempts,
                " permanently" if isinstance(exc, PermanentError) else "",
                error,
            )
            return Outcome(
                envelope,
                started,
                time.perf_counter() - clock,
                error=error,
                final=final,
                attempt=attempt.attempts,
            )
        return Outcome(
            envelope,
            started,
            time.perf_counter() - clock,
            result=encoded,
            cache=plan.cache,
            cache_ttl=task_type.cache_ttl,
            cache_hit=False if plan.cache else None,
            attempt=attempt.attempts,
        )

    async def _settle(self, outcomes: Sequence[Outcome]) -> list[tuple[Verdict, str]]:
        """Re-send what gets another attempt and dead-letter what has none, one send for each kind."""
        retries = [o for o in outcomes if o.status is TaskStatus.FAILED]
        finals = [o for o in outcomes if o.status is TaskStatus.DEAD_LETTERED]
        unsent: dict[str, str] = {}
        if retries:
            unsent |= await self._send(retries, self._broker.send_batch, [_retry_message(o) for o in retries])
        if finals:
            unsent |= await self._send(
                finals, self._broker.dead_letter, [_dead_letter_message(o) for o in finals]
            )
        found: list[tuple[Verdict, str]] = []
        for outcome in outcomes:
            if outcome.envelope.id in unsent:
                found.append((Verdict.REDELIVER, unsent[outcome.envelope.id]))
            elif outcome.error is None:
                found.append((Verdict.COMPLETED, ""))
            else:
                found.append((_VERDICTS[outcome.status], outcome.error))
        return found

    async def _send(
        self,
        outcomes: Sequence[Outcome],
        send: Callable[[Sequence[OutgoingMessage]], Awaitable[None]],
        messages: Sequence[OutgoingMessage],
    ) -> dict[str, str]:
        """The tasks whose messages the broker did not take, with the reason; empty when all went."""
        try:
            # Through the sending hook, so that the next attempt stays in the task's trace.
            with self._hooks.sending(self._broker.system, self._broker.queue, messages) as traced:
                await send(traced)
        except BrokerError as exc:
            log.error("Could not settle %d task(s) through the broker, handed back: %s", len(outcomes), exc)
            return {o.envelope.id: str(exc) for o in outcomes}
        return {}


_VERDICTS = {TaskStatus.FAILED: Verdict.RETRIED, TaskStatus.DEAD_LETTERED: Verdict.DEAD_LETTERED}


def _already_settled(envelope: TaskEnvelope, attempt: Attempt) -> Verdict | None:
    """A redelivery of finished work is not run again."""
    if attempt.previous_status is TaskStatus.SUCCEEDED:
        log.info("Task %s already succeeded; the redelivered message is not run again", envelope.id)
        return Verdict.COMPLETED
    if attempt.previous_status is TaskStatus.DEAD_LETTERED:
        log.info("Task %s was dead-lettered earlier; the redelivered message is dropped", envelope.id)
        return Verdict.COMPLETED
    return None


def _retry_message(outcome: Outcome) -> OutgoingMessage:
    # A message id of its own per attempt: Service Bus would drop a second message with the task's id
    # as a duplicate. The envelope (and so the task id) is unchanged.
    envelope = outcome.envelope
    return OutgoingMessage(f"{envelope.id}.{outcome.attempt + 1}", envelope.encode())


def _dead_letter_message(outcome: Outcome) -> OutgoingMessage:
    envelope = outcome.envelope
    return OutgoingMessage(
        envelope.id,
        envelope.encode(),
        {DEAD_LETTER_REASON: "TaskFailed", DEAD_LETTER_DESCRIPTION: (outcome.error or "")[:1000]},
    )


def _describe(exc: Exception, task_type: TaskType) -> str:
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: the handler took longer than {task_type.timeout:g}s"
    return f"{type(exc).__name__}: {exc}"
