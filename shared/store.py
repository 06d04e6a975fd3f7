"""Valkey: task status and results, counters, latency histograms, backlog snapshot, result cache
and idempotency keys. Every write a task causes is one pipeline (or one script) round trip.

Keys (prefix ``tl:``): ``task:{id}`` hash with a TTL; ``counters`` hash; ``hist:{name}`` hashes
of bucket → count; ``tp:{second}`` per-second processed counts; ``backlog`` snapshot;
``cache:{digest}`` results and ``cache:index`` (sorted by expiry, to count live keys);
``idem:{key}`` ids; ``dead-letters`` the last reasons for undecodable messages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import valkey.asyncio as valkey
from valkey.exceptions import ValkeyError

from shared.brokers.base import Backlog
from shared.envelope import TaskEnvelope
from shared.errors import StoreError
from shared.histogram import bucket
from shared.secrets import Secret

log = logging.getLogger(__name__)

P = "tl:"
COUNTERS = P + "counters"
BACKLOG = P + "backlog"
CACHE_INDEX = P + "cache:index"
DEAD_LETTERS = P + "dead-letters"
IDEMPOTENCY_TTL = 24 * 3600
THROUGHPUT_WINDOW = 60

# Starting an attempt must read and write atomically: a redelivered task that already succeeded
# (or was dead-lettered) must not run again, whichever consumer sees it first.
_BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'dead-lettered' then
  return {status, tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), false}
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'type', ARGV[3],
           'submitted_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local cached = false
if #KEYS > 1 then cached = redis.call('GET', KEYS[2]) end
return {status or 'unknown', attempts, cached}
"""


def task_key(task_id: str) -> str:
    return f"{P}task:{task_id}"


def cache_key(task_type: str, payload: dict[str, Any]) -> str:
    """Same type and payload, same key: canonical JSON (sorted keys) hashed."""
    canonical = json.dumps([task_type, payload], sort_keys=True, separators=(",", ":"))
    return f"{P}cache:{hashlib.sha256(canonical.encode()).hexdigest()}"


@dataclass(frozen=True)
class Attempt:
    """What starting an attempt found: the earlier status, this attempt's number, a cached result."""

    previous_status: str
    attempts: int
    cached: bytes | None

    @property
    def already_final(self) -> bool:
        return self.previous_status in ("succeeded", "dead-lettered")


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: ``result`` (JSON bytes) on success, ``error`` on failure."""

    envelope: TaskEnvelope
    started_at: float
    duration: float = 0.0
    result: bytes = b"null"
    error: str | None = None
    final: bool = False
    cache: str | None = None
    cache_ttl: int | None = None
    cache_hit: bool | None = None


class Store:
    """Async Valkey access for the pipeline; one client (and connection pool) per process."""

    def __init__(self, url: str, password: Secret | None = None, *, status_ttl: int = 7 * 24 * 3600) -> None:
        self._client: valkey.Valkey = valkey.Valkey.from_url(
            url,
            password=password.reveal() if password else None,
            max_connections=256,
            socket_timeout=5,
            socket_connect_timeout=3,
            health_check_interval=30,
        )
        self._status_ttl = status_ttl
        self._begin = self._client.register_script(_BEGIN)

    @property
    def client(self) -> valkey.Valkey:
        return self._client

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"Valkey is not reachable: {exc}") from exc

    async def record_accepted(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Mark each task queued and count it; one round trip for the whole submission.

        Written before the send, so a consumer quicker than this write cannot be overwritten by it;
        :meth:`forget_accepted` undoes it when the broker refuses the messages.
        """
        pipe = self._client.pipeline(transaction=False)
        for e in envelopes:
            key = task_key(e.id)
            pipe.hset(
                key,
                mapping={"status": "queued", "type": e.type, "attempts": 0, "submitted_at": e.submitted_at},
            )
            pipe.expire(key, self._status_ttl)
        per_type: dict[str, int] = {}
        for e in envelopes:
            per_type[e.type] = per_type.get(e.type, 0) + 1
        pipe.hincrby(COUNTERS, "accepted", len(envelopes))
        for task_type, count in per_type.items():
            pipe.hincrby(COUNTERS, f"accepted:{task_type}", count)
        await self._run(pipe)

    async def forget_accepted(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Undo :meth:`record_accepted` for tasks the broker did not take."""
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(*(task_key(e.id) for e in envelopes))
        pipe.hincrby(COUNTERS, "accepted", -len(envelopes))
        for e in envelopes:
            pipe.hincrby(COUNTERS, f"accepted:{e.type}", -1)
        await self._run(pipe)

    async def begin(self, attempts: Sequence[tuple[TaskEnvelope, str | None]]) -> list[Attempt]:
        """Start an attempt of each task (status ``running``, attempts + 1, cached result if any).

        One round trip for the whole batch; each task's check-and-set is atomic.
        """
        pipe = self._client.pipeline(transaction=False)
        now = time.time()
        for envelope, cache in attempts:
            keys = [task_key(envelope.id)] + ([cache] if cache else [])
            # With a pipeline as client this only queues the script call (loaded on execute if needed).
            await self._begin(
                keys=keys, args=[now, self._status_ttl, envelope.type, envelope.submitted_at], client=pipe
            )
        found = []
        for status, count, cached in await self._run(pipe):
            previous = status.decode() if isinstance(status, bytes) else str(status)
            found.append(Attempt(previous, int(count), cached or None))
        return found

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Write every outcome of a batch (status, result or error, counters, histograms): one trip."""
        pipe = self._client.pipeline(transaction=False)
        now = time.time()
        for outcome in outcomes:
            if outcome.error is None:
                self._add_success(pipe, outcome, now)
            else:
                self._add_failure(pipe, outcome, now)
        await self._run(pipe)

    def _add_success(self, pipe: Any, outcome: Outcome, now: float) -> None:
        envelope = outcome.envelope
        key = task_key(envelope.id)
        pipe.hset(key, mapping={"status": "succeeded", "result": outcome.result, "finished_at": now})
        pipe.hdel(key, "error")
        pipe.expire(key, self._status_ttl)
        pipe.hincrby(COUNTERS, "processed", 1)
        pipe.hincrby(COUNTERS, f"processed:{envelope.type}", 1)
        pipe.hincrby(P + "hist:duration", str(bucket(outcome.duration)), 1)
        pipe.hincrby(P + "hist:queue_wait", str(bucket(outcome.started_at - envelope.submitted_at)), 1)
        second = int(now)
        pipe.incr(f"{P}tp:{second}")
        pipe.expire(f"{P}tp:{second}", THROUGHPUT_WINDOW * 2)
        if outcome.cache_hit is not None:
            pipe.hincrby(COUNTERS, "cache_hits" if outcome.cache_hit else "cache_misses", 1)
        if outcome.cache and outcome.cache_ttl and not outcome.cache_hit:
            pipe.set(outcome.cache, outcome.result, ex=outcome.cache_ttl)
            pipe.zadd(CACHE_INDEX, {outcome.cache: now + outcome.cache_ttl})

    def _add_failure(self, pipe: Any, outcome: Outcome, now: float) -> None:
        envelope = outcome.envelope
        key = task_key(envelope.id)
        status = "dead-lettered" if outcome.final else "failed"
        pipe.hset(key, mapping={"status": status, "error": (outcome.error or "")[:2000], "finished_at": now})
        pipe.expire(key, self._status_ttl)
        pipe.hincrby(COUNTERS, "failed", 1)
        pipe.hincrby(COUNTERS, f"failed:{envelope.type}", 1)
        if outcome.final:
            pipe.hincrby(COUNTERS, "dead_lettered", 1)

    async def record_undecodable(self, message_id: str, reason: str) -> None:
        pipe = self._client.pipeline(transaction=False)
        entry = json.dumps({"message_id": message_id, "reason": reason[:500], "at": time.time()})
        pipe.lpush(DEAD_LETTERS, entry)
        pipe.ltrim(DEAD_LETTERS, 0, 99)
        pipe.hincrby(COUNTERS, "undecodable", 1)
        await self._run(pipe)

    async def task(self, task_id: str) -> dict[str, str] | None:
        try:
            raw: dict[bytes, bytes] = await self._client.hgetall(task_key(task_id))  # type: ignore[misc]
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"task {task_id}: cannot read its status from Valkey: {exc}") from exc
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def claim_idempotency_key(self, key: str, ids: Sequence[str]) -> list[str] | None:
        """Bind ``key`` to ``ids`` for 24 h; if it was bound already, the ids it was bound to."""
        name = f"{P}idem:{hashlib.sha256(key.encode()).hexdigest()}"
        try:
            if await self._client.set(name, json.dumps(list(ids)), nx=True, ex=IDEMPOTENCY_TTL):
                return None
            existing = await self._client.get(name)
        except (ValkeyError, OSError) as exc:
            raise StoreError(f"cannot check the idempotency key in Valkey: {exc}") from exc
        return list(json.loads(existing)) if existing else None

    async def release_idempotency_key(self, key: str) -> None:
        """Forget ``key`` after a failed send, so the client's retry is not told it succeeded."""
        await self._client.delete(f"{P}idem:{hashlib.sha256(key.encode()).hexdigest()}")

    async def save_backlog(self, backlog: Backlog) -> None:
        document = {
            "queue": backlog.queue,
            "active": backlog.active,
            "dead_lettered": backlog.dead_lettered,
            "scheduled": backlog.scheduled,
            "taken_at": backlog.taken_at,
        }
        await self._run_one(self._client.set(BACKLOG, json.dumps(document)))

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
        await self._client.aclose()
