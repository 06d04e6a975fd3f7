"""The ``/api/stats`` snapshot, read from Valkey in one round trip."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import valkey.asyncio as valkey

from shared.store.histogram import percentiles
from shared.store.keys import BACKLOG, CACHE_INDEX, COUNTERS, THROUGHPUT_WINDOW, P

QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass(frozen=True, slots=True)
class Figures:
    """The fleet-wide figures as Valkey keeps them: counters, histogram bucket counts (bucket index →
    count, bounds in :mod:`shared.store.histogram`), the last backlog snapshot and live cache keys."""

    counters: dict[str, int]
    queue_wait: dict[int, int]
    duration: dict[int, int]
    backlog: dict[str, Any] | None
    cache_keys: int


def _ask_figures(pipe: Any, now: float) -> None:
    pipe.hgetall(COUNTERS)
    pipe.hgetall(P + "hist:queue_wait")
    pipe.hgetall(P + "hist:duration")
    pipe.get(BACKLOG)
    # Expired cache entries leave the index here, so it only ever counts live keys.
    pipe.zremrangebyscore(CACHE_INDEX, "-inf", now)
    pipe.zcard(CACHE_INDEX)


def _figures(replies: list[Any]) -> Figures:
    counters, wait, duration, backlog, _, cache_keys = replies
    return Figures(
        {k.decode(): int(v) for k, v in counters.items()},
        {int(k): int(v) for k, v in wait.items()},
        {int(k): int(v) for k, v in duration.items()},
        json.loads(backlog) if backlog else None,
        int(cache_keys),
    )


async def figures(client: valkey.Valkey) -> Figures:
    """The counters, histograms, backlog and cache size, in one round trip."""
    pipe = client.pipeline(transaction=False)
    _ask_figures(pipe, time.time())
    return _figures(await pipe.execute())


async def snapshot(client: valkey.Valkey) -> dict[str, Any]:
    """Backlog, totals (overall and per type), throughput, latency percentiles and cache figures."""
    now = time.time()
    second = int(now)
    pipe = client.pipeline(transaction=False)
    _ask_figures(pipe, now)
    window = range(second - THROUGHPUT_WINDOW + 1, second + 1)
    pipe.mget([f"{P}tp:{s}" for s in window])
    pipe.mget([f"{P}ta:{s}" for s in window])
    replies = await pipe.execute()
    found = _figures(replies[:6])
    per_second, accepted = replies[6:]
    counters = found.counters
    processed_last_minute = sum(int(v) for v in per_second if v)
    accepted_last_minute = sum(int(v) for v in accepted if v)
    backlog = found.backlog
    if backlog is not None:
        backlog["age_seconds"] = round(now - backlog["taken_at"], 3)
    hits, misses = counters.get("cache_hits", 0), counters.get("cache_misses", 0)
    return {
        "backlog": backlog,
        "admission": {"unfinished": counters.get("unfinished", 0)},
        "totals": {name: counters.get(name, 0) for name in TOTALS},
        "per_type": _per_type(counters),
        "throughput": {
            "window_seconds": THROUGHPUT_WINDOW,
            "processed": processed_last_minute,
            "per_second": round(processed_last_minute / THROUGHPUT_WINDOW, 2),
            "accepted": accepted_last_minute,
            "accepted_per_second": round(accepted_last_minute / THROUGHPUT_WINDOW, 2),
        },
        "latency_seconds": {
            "queue_wait": _quantiles(found.queue_wait),
            "processing": _quantiles(found.duration),
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "keys": found.cache_keys,
            "hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,
        },
        "taken_at": now,
    }


#: The counts ``/api/stats`` gives overall, and by task type.
TOTALS = (
    "accepted",
    "processed",
    "failed",
    "dead_lettered",
    "undecodable",
    "redriven",
    "cancelled",
    "expired",
    "throttled",
)
PER_TYPE = ("accepted", "processed", "failed", "dead_lettered", "expired", "throttled")


def _per_type(counters: dict[str, int]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for name, value in counters.items():
        kind, _, task_type = name.partition(":")
        if task_type and kind in PER_TYPE:
            found.setdefault(task_type, dict.fromkeys(PER_TYPE, 0))[kind] = value
    return dict(sorted(found.items()))


def _quantiles(counts: dict[int, int]) -> dict[str, float | None]:
    found = percentiles(counts, QUANTILES)
    return {f"p{round(q * 100)}": (round(v, 6) if v is not None else None) for q, v in found.items()}
