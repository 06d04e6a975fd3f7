"""Process deliveries: each one decided on its own, whatever else arrived in its batch.

Decode, put off what is not due yet, let a type's fleet-wide limits say when its tasks start
(:mod:`shared.store.limits`), skip what already finished, serve cached results, run the handler with
its timeout, and record every outcome of the invocation in one Valkey round trip. Then
settle each delivery through the broker: a failed attempt with attempts left is re-sent to arrive
after its backoff, and the delivery is done with; one out of attempts (or that raised
:class:`~shared.pipeline.registry.PermanentError`), and a message that is not a task at all, go to the
dead-letter queue with their reason.

Valkey being unreachable is no failure of a task: the processor holds its deliveries and tries again
for a while (:mod:`shared.pipeline.patience`), then puts them off through the broker. Only when the
broker cannot take them either is a delivery handed back to its trigger for redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import msgspec

from shared.brokers import Broker, OutgoingMessage
from shared.errors import BrokerError, DecodeError, StoreError
from shared.pipeline.delivery import Decision, Delivery, Verdict
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks, ProcessScope
from shared.pipeline.messages import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    dead_letter_message,
    deferred_message,
    retry_message,
)
from shared.pipeline.outcome import Attempt, Outcome, cache_key
from shared.pipeline.patience import Outage, patiently
from shared.pipeline.registry import PermanentError, Registry, TaskType
from shared.pipeline.status import TaskStatus
from shared.store.limits import Admission, Answer, TypeLimits
from shared.store.store import Store

log = logging.getLogger(__name__)

#: A delivery due within this many seconds runs now (clocks and brokers are not exact).
DUE_TOLERANCE = 0.5
#: How long deliveries are held while Valkey is unreachable before they are put off through the broker;
#: well within Service Bus's one-minute lock.
STORE_PATIENCE = 20.0
#: How long a re-send or dead letter is retried while the broker is unreachable before the delivery
#: is handed back to its trigger.
BROKER_PATIENCE = 10.0
#: How far they are put off then.
STORE_OUTAGE_DELAY = 30.0
#: The longest a delivery over its type's limits waits in process for its turn or a free slot; past
#: it, the delivery is put off through the broker (whose waits are coarser: RabbitMQ's start at 1 s).
LIMITS_HOLD = 1.0
#: The most of a handler's traceback kept in the task's status.
TRACEBACK_CHARS = 4000


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

    def __init__(
        self,
        store: Store,
        broker: Broker,
        registry: Registry,
        hooks: Hooks,
        *,
        store_patience: float = STORE_PATIENCE,
        broker_patience: float = BROKER_PATIENCE,
        clock: Callable[[], float] = time.time,
        limits: TypeLimits | None = None,
    ) -> None:
        """``clock`` tells the time (epoch s): when a task is due and when its next attempt is."""
        self._clock = clock
        self._store = store
        self._limits = limits or TypeLimits(store.client)
        self._broker = broker
        self._registry = registry
        self._hooks = hooks
        self._patience = store_patience
        self._valkey = Outage("Valkey")
        self._broker_patience = broker_patience
        self._broker_outage = Outage("The broker")

    async def process(self, deliveries: Sequence[Delivery]) -> list[Decision]:
        """One decision per delivery, in order."""
        with self._hooks.processing(self._broker.system, self._broker.queue, deliveries) as scope:
            return await self._process(deliveries, scope)

    async def _process(self, deliveries: Sequence[Delivery], scope: ProcessScope) -> list[Decision]:
        decisions: list[Decision | None] = [None] * len(deliveries)
        plans: list[_Plan] = []
        early: list[_Plan] = []
        expired: list[_Plan] = []
        now = self._clock()
        for position, delivery in enumerate(deliveries):
            try:
                envelope = TaskEnvelope.decode(delivery.body)
            except DecodeError as exc:
                decisions[position] = await self._undecodable(delivery, str(exc))
                continue
            plan = _Plan.of(position, envelope, self._registry.get(envelope.type))
            if envelope.expires_at is not None and now >= envelope.expires_at:
                expired.append(plan)
            else:
                (early if envelope.due_in(now) > DUE_TOLERANCE else plans).append(plan)
        if expired:
            lapsed = await self._patiently(lambda: self._store.lapse([p.envelope for p in expired]))
            for plan, gone in zip(expired, lapsed, strict=True):
                if gone:
                    log.info(
                        "Task %s (%s) expired before it started; not run",
                        plan.envelope.id,
                        plan.envelope.type,
                    )
                    decisions[plan.position] = Decision(
                        deliveries[plan.position], Verdict.COMPLETED, "expired"
                    )
                else:  # a later attempt of a task that started in time goes on
                    plans.append(plan)
        for plan, decision in zip(early, await self._put_off(early, None, deliveries), strict=True):
            decisions[plan.position] = decision
        limited = [p for p in plans if p.task_type is not None and p.task_type.limited]
        free = [p for p in plans if p.task_type is None or not p.task_type.limited]
        runs = [self._run_plans(free, deliveries, scope)] if free else []
        if limited:
            runs.append(self._run_limited(limited, deliveries, scope))
        for found in await asyncio.gather(*runs):
            for position, decision in found.items():
                decisions[position] = decision
        return [d for d in decisions if d is not None]

    async def _run_limited(
        self, plans: list[_Plan], deliveries: Sequence[Delivery], scope: ProcessScope
    ) -> dict[int, Decision]:
        """Run tasks of limited types as their limits allow: each at its turn when that is near, the
        others put off until their wait is over; never begun before, so never an attempt."""
        try:
            admissions = await self._admit(plans, LIMITS_HOLD)
        except StoreError:
            return await self._until_valkey_is_back(plans, deliveries)
        turns: dict[float, list[_Plan]] = {}
        refused: list[tuple[_Plan, float]] = []
        polls = []
        for plan, admission in zip(plans, admissions, strict=True):
            if admission.answer is Answer.GO:
                turns.setdefault(admission.wait, []).append(plan)
            elif admission.answer is Answer.AGAIN:
                polls.append(self._poll(plan, admission, deliveries, scope))
            else:
                refused.append((plan, admission.wait))
        found = await asyncio.gather(
            self._put_off_each(refused, deliveries),
            *(self._at_turn(wait, group, deliveries, scope) for wait, group in turns.items()),
            *polls,
        )
        return {position: decision for each in found for position, decision in each.items()}

    async def _poll(
        self, plan: _Plan, admission: Admission, deliveries: Sequence[Delivery], scope: ProcessScope
    ) -> dict[int, Decision]:
        """Every slot of the task's type is taken: look again until one frees or the hold is spent."""
        held = 0.0
        while admission.answer is Answer.AGAIN:
            await asyncio.sleep(admission.wait)
            held += admission.wait
            try:
                (admission,) = await self._admit([plan], max(LIMITS_HOLD - held, 0.0))
            except StoreError:
                return await self._until_valkey_is_back([plan], deliveries)
        if admission.answer is Answer.GO:
            return await self._at_turn(admission.wait, [plan], deliveries, scope)
        return await self._put_off_each([(plan, admission.wait)], deliveries)

    async def _admit(self, plans: Sequence[_Plan], hold: float) -> list[Admission]:
        tasks = [(plan.envelope.id, plan.task_type) for plan in plans if plan.task_type is not None]
        with self._hooks.store_call("admit"):
            return await self._patiently(lambda: self._limits.admit(tasks, hold))

    async def _at_turn(
        self, wait: float, plans: list[_Plan], deliveries: Sequence[Delivery], scope: ProcessScope
    ) -> dict[int, Decision]:
        """Run admitted tasks when their turn comes (a rate's turns are an interval apart)."""
        if wait > 0:
            await asyncio.sleep(wait)
        return await self._run_plans(plans, deliveries, scope, release=True)

    async def _put_off_each(
        self, refused: Sequence[tuple[_Plan, float]], deliveries: Sequence[Delivery]
    ) -> dict[int, Decision]:
        """Put each task off for its own wait; it may not run before then (``not_before``), so an early
        return from a broker's wait queue is put off again without asking the limits."""
        now = self._clock()
        later = []
        for plan, wait in refused:
            log.debug(
                "Task %s (%s) is over its type's limits; put off %.2fs",
                plan.envelope.id,
                plan.envelope.type,
                wait,
            )
            later.append(
                replace(plan, envelope=msgspec.structs.replace(plan.envelope, not_before=now + wait))
            )
        decided = await self._put_off(later, None, deliveries)
        return {plan.position: decision for plan, decision in zip(later, decided, strict=True)}

    async def _until_valkey_is_back(
        self, plans: Sequence[_Plan], deliveries: Sequence[Delivery]
    ) -> dict[int, Decision]:
        """Nothing was started: no attempt of any task. Put them off until Valkey is back."""
        later = self._clock() + STORE_OUTAGE_DELAY
        decided = await self._put_off(plans, later, deliveries)
        return {plan.position: decision for plan, decision in zip(plans, decided, strict=True)}

    async def _release(self, plans: Sequence[_Plan]) -> None:
        """Give back the concurrency slots of admitted tasks; a failure only leaves them to lapse."""
        try:
            await self._limits.release([(p.envelope.id, p.task_type) for p in plans if p.task_type])
        except StoreError as exc:
            ids = ", ".join(p.envelope.id for p in plans)
            log.warning("Tasks %s keep their concurrency slots until the lease lapses: %s", ids, exc)

    async def _run_plans(
        self,
        plans: list[_Plan],
        deliveries: Sequence[Delivery],
        scope: ProcessScope,
        *,
        release: bool = False,
    ) -> dict[int, Decision]:
        """Begin, run and record the tasks, then settle each; with ``release``, their concurrency slots
        are given back once their outcomes are recorded, or once it is clear they will not run."""
        try:
            decisions, outcomes = await self._run_and_record(plans, deliveries, scope)
        finally:
            if release:
                await self._release(plans)
        positions = {plan.envelope.id: plan.position for plan in plans}
        for outcome, (verdict, reason) in zip(outcomes, await self._settle(outcomes), strict=True):
            position = positions[outcome.envelope.id]
            decisions[position] = Decision(deliveries[position], verdict, reason)
        return decisions

    async def _run_and_record(
        self, plans: list[_Plan], deliveries: Sequence[Delivery], scope: ProcessScope
    ) -> tuple[dict[int, Decision], list[Outcome]]:
        """The decisions taken without running, and the recorded outcomes still to settle."""
        decisions: dict[int, Decision] = {}
        token = uuid.uuid4().hex  # one start, however often Valkey must be asked
        try:
            with self._hooks.store_call("begin"):
                attempts = await self._patiently(
                    lambda: self._store.begin([(plan.envelope, plan.cache) for plan in plans], token)
                )
        except StoreError:
            return await self._until_valkey_is_back(plans, deliveries), []
        runs = []
        for plan, attempt in zip(plans, attempts, strict=True):
            settled = _already_settled(plan.envelope, attempt)
            if settled is None:
                runs.append(self._run_in_scope(scope, plan, attempt))
            else:
                decisions[plan.position] = Decision(deliveries[plan.position], settled)
        outcomes = list(await asyncio.gather(*runs))
        if not outcomes:
            return decisions, []
        try:
            with self._hooks.store_call("record"):
                await self._patiently(lambda: self._store.record(outcomes))
        except StoreError as exc:
            # The handlers ran but Valkey never heard: hand the messages back (a later delivery may run
            # a task again, which at-least-once allows; the outage was longer than the patience).
            log.error("Valkey stayed unreachable; %d finished tasks are handed back: %s", len(outcomes), exc)
            positions = {plan.envelope.id: plan.position for plan in plans}
            for outcome in outcomes:
                position = positions[outcome.envelope.id]
                decisions[position] = Decision(deliveries[position], Verdict.REDELIVER, str(exc))
            return decisions, []
        self._hooks.recorded(outcomes)
        return decisions, outcomes

    async def _patiently(self, call: Callable[[], Awaitable[_T]]) -> _T:
        return await patiently(call, self._valkey, (StoreError,), self._patience)

    async def _through_broker(
        self,
        send: Callable[[Sequence[OutgoingMessage]], Awaitable[None]],
        messages: Sequence[OutgoingMessage],
    ) -> None:
        """``send`` the messages through the sending hook (so a next attempt stays in its task's
        trace), tried again for a while when the broker is unreachable."""

        async def once() -> None:
            with self._hooks.sending(self._broker.system, self._broker.queue, messages) as traced:
                await send(traced)

        await patiently(once, self._broker_outage, (BrokerError,), self._broker_patience)

    async def _undecodable(self, delivery: Delivery, reason: str) -> Decision:
        log.error(
            "Message %s is not a task and goes to the dead-letter queue: %s", delivery.message_id, reason
        )
        message = OutgoingMessage(
            delivery.message_id or "undecodable",
            delivery.body,
            {DEAD_LETTER_REASON: "Undecodable", DEAD_LETTER_DESCRIPTION: reason[:1000]},
        )
        try:
            await self._through_broker(self._broker.dead_letter, [message])
        except BrokerError as exc:
            log.error("Message %s could not be dead-lettered, handed back: %s", delivery.message_id, exc)
            return Decision(delivery, Verdict.REDELIVER, str(exc))
        try:
            await self._store.record_undecodable(delivery.message_id, reason)
        except StoreError as exc:  # the dead letter itself is kept; only the counter misses it
            log.warning("Message %s dead-lettered, but Valkey did not count it: %s", delivery.message_id, exc)
        return Decision(delivery, Verdict.DEAD_LETTERED, reason)

    async def _put_off(
        self, plans: Sequence[_Plan], until: float | None, deliveries: Sequence[Delivery]
    ) -> list[Decision]:
        """Re-send each task to arrive when it is due (``until``, else its own ``not_before``)."""
        if not plans:
            return []
        when = until if until is not None else self._clock()
        messages = [deferred_message(plan.envelope, when) for plan in plans]
        try:
            await self._through_broker(self._broker.send_batch, messages)
        except BrokerError as exc:
            log.error("Could not put off %d task(s) through the broker, handed back: %s", len(plans), exc)
            return [Decision(deliveries[p.position], Verdict.REDELIVER, str(exc)) for p in plans]
        return [Decision(deliveries[p.position], Verdict.DEFERRED) for p in plans]

    async def _run_in_scope(self, scope: ProcessScope, plan: _Plan, attempt: Attempt) -> Outcome:
        with scope.running(plan.envelope, plan.position) as task:
            outcome = await self._run(plan, attempt)
            task.finished(outcome)
            if outcome.error is None:
                # One line per task outcome; a failure has logged its own (with its traceback).
                log.info(
                    "Task %s (%s) attempt %d succeeded in %.1fms%s",
                    outcome.envelope.id,
                    outcome.envelope.type,
                    outcome.attempt,
                    outcome.duration * 1000,
                    " (cached)" if outcome.cache_hit else "",
                )
            return outcome

    async def _run(self, plan: _Plan, attempt: Attempt) -> Outcome:
        envelope, task_type = plan.envelope, plan.task_type
        started = self._clock()
        if task_type is None:
            log.error("Task %s has unknown type %s: dead-lettered", envelope.id, envelope.type)
            error = f"unknown task type '{envelope.type}'"
            return Outcome(
                envelope, started, error=error, final=True, attempt=attempt.attempts, reason="UnknownTaskType"
            )
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
            return self._failed(plan, task_type, attempt, exc, started, time.perf_counter() - clock)
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

    def _failed(
        self, plan: _Plan, task_type: TaskType, attempt: Attempt, exc: Exception, started: float, took: float
    ) -> Outcome:
        envelope = plan.envelope
        permanent = isinstance(exc, PermanentError)
        final = permanent or attempt.attempts >= task_type.max_attempts
        error = _describe(exc, task_type)
        retry_at = (
            None if final else started + took + task_type.retry_delay(attempt.attempts, random.random())
        )
        # Logged once per failed attempt with the handler's own traceback: a WARNING while another
        # attempt follows, an ERROR when the task is dead-lettered.
        log.log(
            logging.ERROR if final else logging.WARNING,
            "Task %s attempt %d/%d failed%s: %s",
            envelope.id,
            attempt.attempts,
            task_type.max_attempts,
            _what_next(permanent, None if retry_at is None else retry_at - started - took),
            error,
            exc_info=exc,
        )
        trace = "".join(traceback.format_exception(exc))[-TRACEBACK_CHARS:]
        return Outcome(
            envelope,
            started,
            took,
            error=error,
            final=final,
            attempt=attempt.attempts,
            traceback=trace,
            retry_at=retry_at,
            reason=("PermanentError" if permanent else "MaxAttemptsExceeded") if final else None,
        )

    async def _settle(self, outcomes: Sequence[Outcome]) -> list[tuple[Verdict, str]]:
        """Re-send what gets another attempt and dead-letter what has none, one send for each kind."""
        retries = [o for o in outcomes if o.status is TaskStatus.FAILED]
        finals = [o for o in outcomes if o.status is TaskStatus.DEAD_LETTERED]
        unsent: dict[str, str] = {}
        if retries:
            unsent |= await self._send(retries, self._broker.send_batch, [retry_message(o) for o in retries])
        if finals:
            unsent |= await self._send(
                finals, self._broker.dead_letter, [dead_letter_message(o) for o in finals]
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
            await self._through_broker(send, messages)
        except BrokerError as exc:
            log.error("Could not settle %d task(s) through the broker, handed back: %s", len(outcomes), exc)
            return {o.envelope.id: str(exc) for o in outcomes}
        return {}


_T = TypeVar("_T")
_VERDICTS = {TaskStatus.FAILED: Verdict.RETRIED, TaskStatus.DEAD_LETTERED: Verdict.DEAD_LETTERED}


def _what_next(permanent: bool, retry_in: float | None) -> str:
    if permanent:
        return " permanently; dead-lettered"
    if retry_in is None:
        return "; out of attempts, dead-lettered"
    return f"; next attempt in {retry_in:.1f}s"


def _already_settled(envelope: TaskEnvelope, attempt: Attempt) -> Verdict | None:
    """A redelivery of finished work is not run again."""
    if attempt.previous_status is TaskStatus.SUCCEEDED:
        log.info("Task %s already succeeded; the redelivered message is not run again", envelope.id)
        return Verdict.COMPLETED
    if attempt.previous_status is TaskStatus.DEAD_LETTERED:
        log.info("Task %s was dead-lettered earlier; the redelivered message is dropped", envelope.id)
        return Verdict.COMPLETED
    if attempt.previous_status is TaskStatus.CANCELLED:
        log.info("Task %s was cancelled; its message is dropped", envelope.id)
        return Verdict.COMPLETED
    if attempt.previous_status is TaskStatus.EXPIRED:
        log.info("Task %s expired before it started; its message is dropped", envelope.id)
        return Verdict.COMPLETED
    return None


def _describe(exc: Exception, task_type: TaskType) -> str:
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: the handler took longer than {task_type.timeout:g}s"
    return f"{type(exc).__name__}: {exc}"
