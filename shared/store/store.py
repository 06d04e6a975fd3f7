"""Valkey: task status and results, counters, latency histograms, backlog snapshot, result cache
and idempotency keys. Every write a task causes is one pipeline (or one script) round trip; the key
names are in :mod:`shared.store.keys`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import valkey.asyncio as valkey
from valkey.exceptions import ValkeyError

from shared.brokers.base import Backlog
from shared.errors import StoreError
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.outcome import Attempt, Outcome
from shared.pipeline.status import TaskStatus
from shared.secrets import Secret
from shared.secrets.refresh import valkey_pool
from shared.store import listing, stats
from shared.store.batching import Coalescer, FastConnection
from shared.store.histogram import bucket
from shared.store.idempotency import CLAIM, COMPLETE, PENDING_TTL, Claim, fingerprint, key_name
from shared.store.keys import (
    ALL_TASKS,
    BACKLOG,
    CACHE_INDEX,
    COUNTERS,
    DEAD_LETTERS,
    IDEMPOTENCY_TTL,
    P,
    status_index,
    task_key,
    type_index,
)
from shared.store.scripts import ACCEPT, BEGIN, CANCEL, FAIL, LAPSE, RATE, RECONCILE, REDRIVE, SUCCEED
from shared.store.stats import Figures

log = logging.getLogger(__name__)

_STATUSES = frozenset(TaskStatus)
#: What a task that never started may be: unknown (its status expired), queued or scheduled.
_NOT_STARTED = frozenset({"", "queued", "scheduled", "expired"})
_PAYLOAD = msgspec.json.Encoder()


class Store:
    """Async Valkey access for the pipeline; one client (and connection pool) per process."""

    def __init__(self, url: str, password: Secret | None = None, *, status_ttl: int = 7 * 24 * 3600) -> None:
        # The pool authenticates each new connection with the password's current value, and re-reads
        # a Key Vault-backed one when Valkey refuses it (shared.secrets.refresh).
        pool = valkey_pool(
            url,
            password,
            max_connections=256,
            socket_timeout=5,
            socket_connect_timeout=3,
            health_check_interval=30,
            connection_class=FastConnection,
        )
        self._client: valkey.Valkey = valkey.Valkey.from_pool(pool)
        self._status_ttl = status_ttl
        scripts = (BEGIN, ACCEPT, SUCCEED, FAIL, REDRIVE, CANCEL, LAPSE, RATE, RECONCILE, CLAIM, COMPLETE)
        self._batched = Coalescer(self._client, scripts)

    @property
    def client(self) -> valkey.Valkey:
        return self._client

    async def stats(self) -> dict[str, Any]:
        """The ``/api/stats`` figures, read in one round trip (:mod:`shared.store.stats`)."""
        try:
            return await stats.snapshot(self._client)
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey did not answer the stats read: {exc}") from exc

    async def figures(self) -> Figures:
        """The raw fleet-wide figures (counters, histograms, backlog), for the metrics exposition."""
        try:
            return await stats.figures(self._client)
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey did not answer the figures read: {exc}") from exc

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey is not reachable: {exc}") from exc

    async def record_accepted(
        self, envelopes: Sequence[TaskEnvelope], trace_id: str = "", *, max_backlog: int = 0
    ) -> tuple[bool, int]:
        """Mark each task queued (or scheduled, when delayed) and count it into the live backlog, unless
        that is at ``max_backlog`` already (0: no limit); one round trip for the whole submission.
        Whether they were recorded, and the live backlog (with them, or the one that refused them).

        Written before the send, so a consumer quicker than this write cannot be overwritten by it;
        :meth:`forget_accepted` undoes it when the broker refuses the messages.
        """
        args: list[Any] = [self._status_ttl, trace_id, envelopes[0].submitted_at, max_backlog]
        for e in envelopes:
            args += [
                e.type,
                "" if e.not_before is None else e.not_before,
                "" if e.expires_at is None else e.expires_at,
                _PAYLOAD.encode(e.payload),
                e.priority,
            ]
        ((admitted, unfinished),) = await self._send(
            [ACCEPT.command([COUNTERS, *(task_key(e.id) for e in envelopes)], args)]
        )
        return bool(int(admitted)), int(unfinished)

    async def forget_accepted(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Undo :meth:`record_accepted` for tasks the broker did not take."""
        pipe = self._client.pipeline(transaction=True)
        ids = [e.id for e in envelopes]
        pipe.delete(*(task_key(i) for i in ids))
        for index in (ALL_TASKS, status_index("queued"), status_index("scheduled")):
            pipe.zrem(index, *ids)
        pipe.hincrby(COUNTERS, "accepted", -len(envelopes))
        pipe.hincrby(COUNTERS, "unfinished", -len(envelopes))
        for e in envelopes:
            pipe.hincrby(COUNTERS, f"accepted:{e.type}", -1)
            pipe.zrem(type_index(e.type), e.id)
        await self._run(pipe)

    async def begin(
        self, attempts: Sequence[tuple[TaskEnvelope, str | None]], token: str = ""
    ) -> list[Attempt]:
        """Start an attempt of each task (status ``running``, attempts + 1, cached result if any).

        One round trip for the whole batch; each task's check-and-set is atomic. ``token`` names this
        start: asked again with the same token (a retry after Valkey dropped the answer), a task that
        is running from it is not counted a second time.
        """
        now = time.time()
        commands = [
            BEGIN.command(
                [task_key(envelope.id)] + ([cache] if cache else []),
                [now, self._status_ttl, envelope.type, envelope.submitted_at, token or uuid.uuid4().hex],
            )
            for envelope, cache in attempts
        ]
        found = []
        for status, count, cached in await self._send(commands):
            previous = status.decode() if isinstance(status, bytes) else str(status)
            known = previous in _STATUSES
            found.append(Attempt(TaskStatus(previous) if known else None, int(count), cached or None))
        return found

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write every outcome of a batch (status, result or error, counters, histograms)."""
        now = time.time()
        await self._send(
            [self._succeeded(o, now) if o.error is None else self._failed(o, now) for o in outcomes]
        )

    def _succeeded(self, outcome: Outcome, now: float) -> tuple[Any, ...]:
        envelope = outcome.envelope
        keys = [
            task_key(envelope.id),
            COUNTERS,
            P + "hist:duration",
            P + "hist:queue_wait",
            f"{P}tp:{int(now)}",
        ]
        hit = "" if outcome.cache_hit is None else ("1" if outcome.cache_hit else "0")
        cache_ttl = outcome.cache_ttl or 0
        if outcome.cache and cache_ttl:
            keys += [outcome.cache, CACHE_INDEX]
        args = [
            now,
            self._status_ttl,
            envelope.type,
            outcome.result,
            bucket(outcome.duration),
            bucket(outcome.started_at - envelope.submitted_at),
            hit,
            cache_ttl,
            now + cache_ttl,
        ]
        return SUCCEED.command(keys, args)

    def _failed(self, outcome: Outcome, now: float) -> tuple[Any, ...]:
        envelope = outcome.envelope
        args = [
            now,
            self._status_ttl,
            envelope.type,
            (outcome.error or "")[:2000],
            "1" if outcome.final else "0",
            outcome.traceback or "",
            "" if outcome.retry_at is None else outcome.retry_at,
            envelope.encode(),
            outcome.reason or "",
        ]
        return FAIL.command([task_key(envelope.id), COUNTERS], args)

    async def _send(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        try:
            return await self._batched.run(commands)
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey refused a write: {exc}") from exc

    async def record_undecodable(self, message_id: str, reason: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        entry = json.dumps({"message_id": message_id, "reason": reason[:500], "at": time.time()})
        pipe.lpush(DEAD_LETTERS, entry)
        pipe.ltrim(DEAD_LETTERS, 0, 99)
        pipe.hincrby(COUNTERS, "undecodable", 1)
        await self._run(pipe)

    async def claim_redrive(
        self, task_id: str, fallback: bytes = b""
    ) -> tuple[TaskStatus | None, bytes | None]:
        """Set a failed or dead-lettered task back to queued with its attempts reset; its status before,
        and its envelope to re-send: the one kept, else ``fallback`` (None when it was in no such state,
        or is unknown)."""
        ((status, envelope),) = await self._send([REDRIVE.command([task_key(task_id), COUNTERS], [fallback])])
        found = status.decode() if isinstance(status, bytes) else status
        return (TaskStatus(found) if found in _STATUSES else None), (envelope or None)

    async def undo_redrive(self, task_id: str, status: TaskStatus, envelope: bytes) -> None:
        """Put a claimed task back as it was when its re-send failed."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(task_key(task_id), mapping={"status": str(status), "envelope": envelope})
        pipe.hincrby(COUNTERS, "redriven", -1)
        await self._run(pipe)

    async def tasks(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> listing.Page:
        """A page of tasks, newest first (:mod:`shared.store.listing`)."""
        try:
            return await listing.page(
                self._client, status=status, task_type=task_type, limit=limit, cursor=cursor
            )
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey did not answer the task listing: {exc}") from exc

    async def undecodable(self) -> list[dict[str, Any]]:
        """The last 100 messages that were not tasks: their message id, reason and when (newest first)."""
        raw = await self._run_one(self._client.lrange(DEAD_LETTERS, 0, 99))
        return [json.loads(entry) for entry in raw]

    async def take_rate(
        self, caller: str, tasks: int, per_second: float, burst: int
    ) -> tuple[bool, float, float]:
        """Take ``tasks`` from ``caller``'s allowance (``per_second``, ``burst`` at once), atomically
        across every instance: (taken, remaining or seconds to wait, seconds until it is whole)."""
        key = f"{P}rate:{caller}"
        ((taken, value, reset),) = await self._send(
            [RATE.command([key], [time.time(), 1.0 / per_second, burst, tasks])]
        )
        return bool(int(taken)), float(value), float(reset)

    async def lapse(self, envelopes: Sequence[TaskEnvelope]) -> list[bool]:
        """Mark tasks that never started and are past their expiry ``expired``; for each, whether it
        lapsed, now or earlier (False when it had started: an attempt that began before its expiry goes
        on)."""
        now, ttl = time.time(), self._status_ttl
        commands = [LAPSE.command([task_key(e.id), COUNTERS], [now, e.type, ttl]) for e in envelopes]
        found = await self._send(commands)
        return [(s.decode() if isinstance(s, bytes) else str(s)) in _NOT_STARTED for s in found]

    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel a queued or scheduled task; the status it was in (None when unknown). Any other status
        means it was not cancelled."""
        (found,) = await self._send([CANCEL.command([task_key(task_id), COUNTERS], [time.time()])])
        status = found.decode() if isinstance(found, bytes) else str(found)
        return TaskStatus(status) if status in _STATUSES else None

    async def task(self, task_id: str) -> dict[str, str] | None:
        raw: dict[bytes, bytes] = await self._run_one(self._client.hgetall(task_key(task_id)))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def claim_idempotency_key(self, key: str, body: bytes) -> tuple[Claim, bytes | None]:
        """Claim ``key`` for the request with ``body`` (:mod:`shared.store.idempotency`); what was found,
        and the kept answer when the key's request already finished."""
        (found,) = await self._send([CLAIM.command([key_name(key)], [fingerprint(body), PENDING_TTL])])
        outcome = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
        return Claim(outcome), (found[1] if len(found) > 1 else None)

    async def complete_idempotency_key(self, key: str, body: bytes, answer: bytes) -> None:
        """Keep ``answer`` under ``key`` for 24 h, once the request's tasks are confirmed sent."""
        await self._send([COMPLETE.command([key_name(key)], [fingerprint(body), answer, IDEMPOTENCY_TTL])])

    async def release_idempotency_key(self, key: str) -> None:
        """Forget ``key`` after a failed send, so the client's retry is not told it succeeded."""
        await self._run_one(self._client.delete(key_name(key)))

    async def save_backlog(self, backlog: Backlog) -> None:
        document = {
            "queue": backlog.queue,
            "active": backlog.active,
            "dead_lettered": backlog.dead_lettered,
            "scheduled": backlog.scheduled,
            "taken_at": backlog.taken_at,
            "lanes": dict(backlog.lanes) if backlog.lanes is not None else None,
        }
        await self._run_one(self._client.set(BACKLOG, json.dumps(document)))

    async def reconcile_backlog(self, broker_count: int) -> tuple[int, int]:
        """Set the live backlog to what the status indexes hold as unfinished, or to ``broker_count``
        when the broker holds more; (before, after)."""
        keys = [COUNTERS, *(status_index(s) for s in ("queued", "scheduled", "running", "failed"))]
        oldest = time.time() - self._status_ttl
        ((before, after),) = await self._send([RECONCILE.command(keys, [broker_count, oldest])])
        return int(before), int(after)

    async def load_backlog(self) -> Backlog | None:
        raw = await self._run_one(self._client.get(BACKLOG))
        if not raw:
            return None
        document = json.loads(raw)
        return Backlog(**document)

    async def _run(self, pipe: Any) -> list[Any]:
        try:
            return list(await pipe.execute())
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey refused a pipeline: {exc}") from exc

    async def _run_one(self, call: Any) -> Any:
        try:
            return await call
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey: {exc}") from exc

    async def close(self) -> None:
        await self._batched.drain()
        await self._client.aclose()
