"""Listing tasks: newest first, by status or type, a page at a time, from the listing indexes.

An index entry whose task has expired is skipped and removed as it is met. The cursor names the last
task of a page (``<submitted_at>:<id>``); tasks submitted together share a submission time, so the
id breaks the tie the way the index orders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import valkey.asyncio as valkey

from shared.store.keys import ALL_TASKS, status_index, task_key, type_index

#: At most this many index entries are read for one page when a second filter drops most of them.
SCAN_LIMIT = 5000


@dataclass(frozen=True, slots=True)
class Page:
    """One page of tasks (each its id and its hash's fields) and the cursor of the next, if any."""

    tasks: list[tuple[str, dict[str, str]]]
    cursor: str | None


def parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    """``(score, id)`` of a cursor; :class:`ValueError` when it is not one this module made."""
    if not cursor:
        return None
    score, _, task_id = cursor.partition(":")
    if not task_id:
        raise ValueError(f"'{cursor}' is not a cursor this API gave")
    return float(score), task_id


async def page(
    client: valkey.Valkey,
    *,
    status: str | None,
    task_type: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """Up to ``limit`` tasks after ``cursor``, newest first, filtered by ``status`` and ``task_type``."""
    after = parse_cursor(cursor)
    index = status_index(status) if status else type_index(task_type) if task_type else ALL_TASKS
    found: list[tuple[str, dict[str, str]]] = []
    high: float | str = after[0] if after else "+inf"
    scanned = 0
    last: tuple[float, str] | None = None
    while len(found) < limit and scanned < SCAN_LIMIT:
        batch = await client.zrevrangebyscore(
            index, high, "-inf", start=0, num=limit * 2 + 1, withscores=True
        )
        entries = [(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in batch]
        if after is not None:
            # Ties with the cursor's score come in descending id order: keep those after the cursor.
            entries = [(i, s) for i, s in entries if s < after[0] or i < after[1]]
        if not entries:
            return Page(found, None)
        scanned += len(entries)
        fields = await _hashes(client, [i for i, _ in entries])
        gone = []
        for (task_id, score), values in zip(entries, fields, strict=True):
            last = (score, task_id)
            if not values:
                gone.append(task_id)
                continue
            if (status and values.get("status") != status) or (task_type and values.get("type") != task_type):
                continue
            found.append((task_id, values))
            if len(found) == limit:
                break
        if gone:
            await client.zrem(index, *gone)
        after = last
        high = last[0] if last else high
    more = last is not None and (len(found) == limit or scanned >= SCAN_LIMIT)
    return Page(found, f"{last[0]!r}:{last[1]}" if more and last else None)


async def _hashes(client: valkey.Valkey, ids: list[str]) -> list[dict[str, str]]:
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hgetall(task_key(task_id))
    raw: list[dict[Any, Any]] = await pipe.execute()
    return [{k.decode(): v.decode() for k, v in found.items()} for found in raw]
