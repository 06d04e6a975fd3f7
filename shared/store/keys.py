"""Valkey key names (prefix ``tl:``), shared by the store's writes and its stats read.

``task:{id}`` hash with a TTL; ``counters`` hash; ``hist:{name}`` hashes of bucket → count;
``tp:{second}`` per-second processed counts; ``backlog`` snapshot; ``cache:{digest}`` results and
``cache:index`` (sorted by expiry, to count live keys); ``idem:{key}`` ids; ``dead-letters`` the last
reasons for undecodable messages.
"""

from __future__ import annotations

P = "tl:"
COUNTERS = P + "counters"
BACKLOG = P + "backlog"
CACHE_INDEX = P + "cache:index"
DEAD_LETTERS = P + "dead-letters"
IDEMPOTENCY_TTL = 24 * 3600
THROUGHPUT_WINDOW = 60


def task_key(task_id: str) -> str:
    return f"{P}task:{task_id}"
