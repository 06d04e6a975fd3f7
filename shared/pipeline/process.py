"""Accept tasks and process them: the logic behind the HTTP and queue-triggered functions.

Accepting: validate every task before any is sent, honour backpressure and idempotency keys,
record the tasks as queued, send them, and answer only once the broker has confirmed.
Processing: decode, skip what already finished, serve cached results, run the handler with its
timeout, and record every outcome of a batch in one Valkey round trip. A failure raises, so the
broker redelivers it; the last attempt marks the task dead-lettered and the broker's own limit
moves the message to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from opentelemetry.trace import Span, SpanContext

from shared import telemetry
from shared.brokers import Broker, OutgoingMessage
from shared.errors import (
    BackpressureError,
    DecodeError,
    FieldError,
    TaskFailedError,
    ValidationError,
)
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.registry import PayloadError, Registry, TaskType
from shared.store.store import Attempt, Outcome, Store, cache_key

log = logging.getLogger(__name__)

MAX_TASKS_PER_SUBMISSION = 1000
_JSON = msgspec.json.Decoder()


@dataclass(frozen=True)
class Submission:
    """Validated tasks, and whether the body was an array (the answer mirrors its shape)."""

    envelopes: list[TaskEnvelope]
    is_batch: bool


def parse_submission(body: bytes, registry: Registry, *, now: float | None = None) -> Submission:
    """Validate a body of one task or an array of up to 1,000; every bad index and field is named."""
    try:
        document = _JSON.decode(body)
    except msgspec.DecodeError as exc:
        raise ValidationError([FieldError(None, "body", f"not valid JSON: {exc}")]) from exc
    is_batch = isinstance(document, list)
    items = document if is_batch else [document]
    if is_batch and not items:
        raise ValidationError([FieldError(None, "body", "an array of tasks must not be empty")])
    if len(items) > MAX_TASKS_PER_SUBMISSION:
        raise ValidationError(
            [FieldError(None, "body", f"at most {MAX_TASKS_PER_SUBMISSION} tasks a request")]
        )
    submitted_at = time.time() if now is None else now
    envelopes: list[TaskEnvelope] = []
    errors: list[FieldError] = []
    for position, item in enumerate(items):
        index = position if is_batch else None
        try:
            task_type, payload = _validate_item(item, registry)
        except _ItemError as exc:
            errors.append(FieldError(index, exc.field, exc.message))
            continue
        envelopes.append(TaskEnvelope(str(uuid.uuid4()), task_type, payload, submitted_at))
    if errors:
        raise ValidationError(errors)
    return Submission(envelopes, is_batch)


class _ItemError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message


def _validate_item(item: object, registry: Registry) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise _ItemError("task", "expected an object with 'type' and 'payload'")
    unknown = set(item) - {"type", "payload"}
    if unknown:
        raise _ItemError(sorted(unknown)[0], "unknown field (a task has 'type' and 'payload')")
    name = item.get("type")
    if not isinstance(name, str) or not name:
        raise _ItemError("type", "required: the name of a task type")
    task_type = registry.get(name)
    if task_type is None:
        known = ", ".join(t.name for t in registry)
        raise _ItemError("type", f"unknown task type '{name}' (known: {known})")
    try:
        validated = task_type.validate(item.get("payload", {}))
    except PayloadError as exc:
        raise _ItemError(exc.field, exc.message) from exc
    return name, msgspec.to_builtins(validated)


@dataclass
class Accepted:
    """The ids of an accepted submission; ``replayed`` when an idempotency key matched."""

    ids: list[str]
    is_batch: bool
    replayed: bool = False


class Accepter:
    """Validates, applies backpressure and idempotency, records and sends."""

    def __init__(
        self,
        broker: Broker,
        store: Store,
        registry: Registry,
        *,
        max_backlog: int,
        backlog_cache_seconds: float = 1.0,
    ) -> None:
        self._broker = broker
        self._store = store
        self._registry = registry
        self._max_backlog = max_backlog
        self._backlog_cache_seconds = backlog_cache_seconds
        self._backlog_checked = 0.0
        self._backlog_total = 0

    async def accept(self, body: bytes, idempotency_key: str | None = None) -> Accepted:
        submission = parse_submission(body, self._registry)
        await self._check_backpressure()
        envelopes = submission.envelopes
        ids = [e.id for e in envelopes]
        if idempotency_key:
            earlier = await self._store.claim_idempotency_key(idempotency_key, ids)
            if earlier is not None:
                log.info("Idempotency key matched: answering with the %d earlier task ids", len(earlier))
                return Accepted(earlier, submission.is_batch, replayed=True)
        with telemetry.valkey_span("record_accepted", envelopes):
            await self._store.record_accepted(envelopes)
        if telemetry.active:
            telemetry.record_accepted(envelopes)
        try:
            await self._broker.send_batch([OutgoingMessage(e.id, e.encode()) for e in envelopes])
        except Exception:
            await self._store.forget_accepted(envelopes)
            if idempotency_key:
                await self._store.release_idempotency_key(idempotency_key)
            raise
        if len(envelopes) == 1:
            log.debug("Task %s accepted (type %s)", envelopes[0].id, envelopes[0].type)
        else:
            log.debug("Tasks %s..%s accepted (%d)", envelopes[0].id, envelopes[-1].id, len(envelopes))
        return Accepted(ids, submission.is_batch)

    async def _check_backpressure(self) -> None:
        # The snapshot changes every 30 s; reading it once a second keeps Valkey off the hot path.
        now = time.monotonic()
        if now - self._backlog_checked > self._backlog_cache_seconds:
            snapshot = await self._store.load_backlog()
            self._backlog_total = snapshot.total if snapshot else 0
            self._backlog_checked = now
        if self._backlog_total > self._max_backlog:
            raise BackpressureError(self._backlog_total, self._max_backlog, retry_after=30)


class Processor:
    """Runs queued tasks through their handlers and records what happened.

    ``system`` and ``queue`` name the broker and queue on the consumer spans.
    """

    def __init__(
        self, store: Store, registry: Registry, *, system: str = "rabbitmq", queue: str = ""
    ) -> None:
        self._store = store
        self._registry = registry
        self._system = system
        self._queue = queue

    async def process(
        self,
        bodies: Sequence[bytes | str],
        message_ids: Sequence[str] = (),
        headers: Sequence[Mapping[Any, Any] | None] = (),
    ) -> None:
        """Process a batch; raise :class:`TaskFailedError` (or DecodeError) if any task failed.

        ``headers`` are each message's headers or application properties: their trace context
        makes the consumer span part of the producer's trace (telemetry on).
        """
        if not telemetry.active:
            await self._process(bodies, message_ids)
            return
        with telemetry.consumer_span(self._system, self._queue, headers, message_ids) as (span, producers):
            await self._process(bodies, message_ids, span if len(bodies) > 1 else None, producers)

    async def _process(
        self,
        bodies: Sequence[bytes | str],
        message_ids: Sequence[str],
        batch_span: Span | None = None,
        producers: Sequence[SpanContext | None] = (),
    ) -> None:
        envelopes: list[TaskEnvelope] = []
        for position, body in enumerate(bodies):
            try:
                envelopes.append(TaskEnvelope.decode(body))
            except DecodeError as exc:
                message_id = message_ids[position] if position < len(message_ids) else ""
                log.error(
                    "Message %s cannot be decoded and goes to the dead-letter queue: %s", message_id, exc
                )
                await self._store.record_undecodable(message_id, str(exc))
                raise
        if telemetry.active and batch_span is None and envelopes:
            telemetry.annotate_delivery(envelopes[0])
        plans = [_Plan.of(e, self._registry.get(e.type)) for e in envelopes]
        with telemetry.valkey_span("begin", envelopes):
            attempts = await self._store.begin([(plan.envelope, plan.cache) for plan in plans])
        runs = []
        failures: list[str] = []
        for position, (plan, attempt) in enumerate(zip(plans, attempts, strict=True)):
            envelope = plan.envelope
            if attempt.previous_status == "succeeded":
                log.info("Task %s already succeeded; the redelivered message is not run again", envelope.id)
            elif attempt.previous_status == "dead-lettered":
                # Attempts are used up: fail again without running, until the broker dead-letters it.
                failures.append(f"task {envelope.id} ({envelope.type}) failed: dead-lettered earlier")
            elif telemetry.active:
                runs.append(self._traced_run(plan, attempt, _at(producers, position), batch_span))
            else:
                runs.append(self._run(plan, attempt))
        outcomes = list(await asyncio.gather(*runs))
        if outcomes:
            with telemetry.valkey_span("record", envelopes):
                await self._store.record(outcomes)
            if telemetry.active:
                telemetry.record_outcomes(outcomes)
        failures[:0] = [
            f"task {o.envelope.id} ({o.envelope.type}) failed: {o.error}"
            for o in outcomes
            if o.error is not None
        ]
        if failures:
            raise TaskFailedError(failures[0])

    async def _traced_run(
        self, plan: _Plan, attempt: Attempt, producer: SpanContext | None, batch_span: Span | None
    ) -> Outcome:
        with telemetry.task_span(plan.envelope, producer, batch_span) as span:
            outcome = await self._run(plan, attempt)
            telemetry.describe_outcome(span, outcome)
            return outcome

    async def _run(self, plan: _Plan, attempt: Attempt) -> Outcome:
        envelope, task_type, cache, cached = plan.envelope, plan.task_type, plan.cache, attempt.cached
        started = time.time()
        if task_type is None:
            log.error("Task %s has unknown type %s: dead-lettered", envelope.id, envelope.type)
            return Outcome(envelope, started, error=f"unknown task type '{envelope.type}'", final=True)
        if cached is not None:
            return Outcome(
                envelope, started, result=cached, cache=cache, cache_ttl=task_type.cache_ttl, cache_hit=True
            )
        clock = time.perf_counter()
        try:
            payload = task_type.validate(envelope.payload)
            async with asyncio.timeout(task_type.timeout):
                result = await task_type.handler(payload)
            encoded = msgspec.json.encode(result)
        except Exception as exc:
            final = attempt.attempts >= task_type.max_attempts
            error = _describe(exc, task_type)
            log.warning(
                "Task %s attempt %d/%d failed: %s",
                envelope.id,
                attempt.attempts,
                task_type.max_attempts,
                error,
            )
            return Outcome(envelope, started, time.perf_counter() - clock, error=error, final=final)
        return Outcome(
            envelope,
            started,
            time.perf_counter() - clock,
            result=encoded,
            cache=cache,
            cache_ttl=task_type.cache_ttl,
            cache_hit=False if cache else None,
        )


@dataclass(frozen=True)
class _Plan:
    """A decoded task, its type (``None`` when unknown) and its cache key when its type caches."""

    envelope: TaskEnvelope
    task_type: TaskType | None
    cache: str | None

    @classmethod
    def of(cls, envelope: TaskEnvelope, task_type: TaskType | None) -> _Plan:
        cache = cache_key(envelope.type, envelope.payload) if task_type and task_type.cache_ttl else None
        return cls(envelope, task_type, cache)


def _at(producers: Sequence[SpanContext | None], position: int) -> SpanContext | None:
    return producers[position] if position < len(producers) else None


def _describe(exc: Exception, task_type: TaskType) -> str:
    if isinstance(exc, TimeoutError):
        return f"TimeoutError: the handler took longer than {task_type.timeout:g}s"
    return f"{type(exc).__name__}: {exc}"
