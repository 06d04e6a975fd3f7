"""Accept tasks: validate every one before any is sent, honour backpressure and idempotency keys,
record them as queued, send them, and answer only once the broker has confirmed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec

from shared.brokers import Broker, OutgoingMessage
from shared.errors import (
    BackpressureError,
    BrokerError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyMismatchError,
    RateLimitedError,
    StoreError,
    ValidationError,
)
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks
from shared.pipeline.patience import Outage
from shared.pipeline.registry import Registry
from shared.pipeline.submission import parse_submission
from shared.store.idempotency import Claim
from shared.store.store import Store

log = logging.getLogger(__name__)

#: For this long after the broker failed a send, submissions answer 503 without trying it (one WARNING
#: says when an outage starts and one when it ends, instead of a traceback per request).
FAST_FAIL_SECONDS = 1.0
#: Seconds a client refused for a full backlog is asked to wait: the backlog is counted live, so room
#: shows as soon as tasks finish.
BACKPRESSURE_RETRY_AFTER = 2


class Accepted(msgspec.Struct, frozen=True):
    """The ids of an accepted submission; ``replayed`` when an idempotency key matched."""

    ids: list[str]
    is_batch: bool
    replayed: bool = False
    #: When each delayed task is due (epoch s), None for one that runs at once; empty when none is.
    due: list[float | None] = []


def _when(envelope: TaskEnvelope) -> datetime | None:
    return None if envelope.not_before is None else datetime.fromtimestamp(envelope.not_before, UTC)


class _Answers:
    """The kept answer of an idempotent request, as JSON."""

    def __init__(self) -> None:
        self._decoder = msgspec.json.Decoder(Accepted)
        self._encoder = msgspec.json.Encoder()

    def decode(self, raw: bytes) -> Accepted:
        return self._decoder.decode(raw)

    def encode(self, accepted: Accepted) -> bytes:
        return self._encoder.encode(accepted)


_ANSWER = _Answers()


class Accepter:
    """Validates, applies backpressure and idempotency, records and sends."""

    def __init__(
        self,
        broker: Broker,
        store: Store,
        registry: Registry,
        hooks: Hooks,
        *,
        max_backlog: int,
        rate_limit: float = 0.0,
        rate_burst: int = 100,
    ) -> None:
        """``max_backlog`` unfinished tasks at most (admission is counted in Valkey with the tasks'
        records, so it holds across instances); ``rate_limit`` tasks per second each caller may submit
        (0: none), ``rate_burst`` at once."""
        self._rate_limit = rate_limit
        self._rate_burst = rate_burst
        self._broker = broker
        self._store = store
        self._registry = registry
        self._hooks = hooks
        self._max_backlog = max_backlog
        self._broker_outage = Outage("The broker")

    async def accept(self, body: bytes, idempotency_key: str | None = None, caller: str = "") -> Accepted:
        """``caller`` names who submits (a hash of the key presented) for the per-caller rate limit."""
        submission = parse_submission(body, self._registry)
        if self._rate_limit > 0:
            await self._check_rate(caller or "anonymous", len(submission.envelopes))
        envelopes = submission.envelopes
        ids = [e.id for e in envelopes]
        if self._broker_outage.failed_within(FAST_FAIL_SECONDS):
            # The broker failed a moment ago: answer 503 at once, leaving nothing behind in Valkey.
            raise BrokerError(f"the broker for '{self._broker.queue}' is unreachable; retry shortly")
        if idempotency_key:
            claim, answer = await self._store.claim_idempotency_key(idempotency_key, body)
            if claim is Claim.DONE and answer is not None:
                earlier = _ANSWER.decode(answer)
                log.info("Idempotency key matched: answering with the %d earlier task ids", len(earlier.ids))
                return Accepted(earlier.ids, earlier.is_batch, replayed=True, due=earlier.due)
            if claim is Claim.IN_FLIGHT:
                raise IdempotencyConflictError("a request with this Idempotency-Key is still in flight")
            if claim is Claim.MISMATCH:
                raise IdempotencyMismatchError("this Idempotency-Key was used with another request body")
        try:
            accepted = await self._record_and_send(envelopes, ids, submission.is_batch)
        except BaseException:
            if idempotency_key:
                await self._store.release_idempotency_key(idempotency_key)
            raise
        if idempotency_key:
            try:
                await self._store.complete_idempotency_key(idempotency_key, body, _ANSWER.encode(accepted))
            except StoreError as exc:
                # The tasks are queued: answer 202. The key stays in flight until its marker expires.
                log.warning("Tasks %s sent, but their Idempotency-Key was not kept: %s", ids[0], exc)
        return accepted

    async def _record_and_send(
        self, envelopes: list[TaskEnvelope], ids: list[str], is_batch: bool
    ) -> Accepted:
        with self._hooks.store_call("record_accepted"):
            admitted, backlog = await self._store.record_accepted(
                envelopes, self._hooks.trace_id(), max_backlog=self._max_backlog
            )
        if not admitted:
            raise BackpressureError(backlog, self._max_backlog, retry_after=BACKPRESSURE_RETRY_AFTER)
        messages = [
            OutgoingMessage(e.id, e.encode(), scheduled_at=_when(e), priority=e.priority) for e in envelopes
        ]
        try:
            with self._hooks.sending(self._broker.system, self._broker.queue, messages) as traced:
                await self._broker.send_batch(traced)
        except BrokerError as exc:
            self._broker_outage.failed(exc)
            await self._store.forget_accepted(envelopes)
            raise
        self._broker_outage.recovered()
        self._hooks.accepted(envelopes)
        if len(envelopes) == 1:
            log.debug("Task %s accepted (type %s)", envelopes[0].id, envelopes[0].type)
        else:
            log.debug("Tasks %s..%s accepted (%d)", envelopes[0].id, envelopes[-1].id, len(envelopes))
        due = [e.not_before for e in envelopes]
        return Accepted(ids, is_batch, due=due if any(d is not None for d in due) else [])

    async def _check_rate(self, caller: str, tasks: int) -> None:
        if tasks > self._rate_burst:
            message = f"{tasks} tasks in one request; this caller may send at most {self._rate_burst} at once"
            raise ValidationError([FieldError(None, "body", message)])
        taken, value, reset = await self._store.take_rate(caller, tasks, self._rate_limit, self._rate_burst)
        if not taken:
            raise RateLimitedError(value, self._rate_limit, self._rate_burst, reset)
