"""Valkey key names (prefix ``tl:``), shared by the store's writes and its stats read.

``task:{id}`` hash with a TTL; ``counters`` hash; ``hist:{name}`` hashes of bucket → count;
``tp:{second}`` per-second processed counts; ``backlog`` snapshot; ``cache:{digest}`` results and
``cache:index`` (sorted by expiry, to count live keys); ``idem:{key}`` ids; ``dead-letters`` the last
reasons for undecodable messages; ``idx:all``, ``idx:s:{status}`` and ``idx:t:{type}`` the task ids
scored by submission time, for listings (kept by :mod:`shared.store.scripts`, trimmed to the status TTL);
``counters`` field ``unfinished`` the live backlog admission counts; ``rate:{caller}`` a caller's GCRA
time; ``running:{type}``, ``type-rate:{type}`` and ``type-returns:{type}`` a task type's fleet-wide
limits (:mod:`shared.store.limits`).
"""

from __future__ import annotations

P = "tl:"
COUNTERS = P + "counters"
BACKLOG = P + "backlog"
CACHE_INDEX = P + "cache:index"
DEAD_LETTERS = P + "dead-letters"
IDEMPOTENCY_TTL = 24 * 3600
THROUGHPUT_WINDOW = 60


TASK_PREFIX = P + "task:"
INDEX = P + "idx:"
ALL_TASKS = INDEX + "all"


def task_key(task_id: str) -> str:
    return TASK_PREFIX + task_id


def status_index(status: str) -> str:
    return f"{INDEX}s:{status}"


def type_index(task_type: str) -> str:
    return f"{INDEX}t:{task_type}"
