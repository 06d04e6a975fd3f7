"""Waiting for a phase's tasks: progress every few seconds, and a clear stop when processing stalls.

A stall is no new processed task for ``patience`` seconds (:func:`stalled`, pure). Giving up then
names how many tasks are missing and where they are: the queue's backlog, the dead letters, and the
statuses the API lists (:func:`whereabouts`).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds between progress lines.
PROGRESS_EVERY = 3.0
#: The statuses a missing task can be in, as the API names them.
STATUSES = ("queued", "scheduled", "running", "failed", "dead-lettered")
_PAGE = 200


class StalledError(Exception):
    """Processing stopped short; ``str()`` says how many tasks are missing and where."""


def stalled(samples: Sequence[tuple[float, int]], patience: float) -> bool:
    """Whether the processed count, sampled as ``(seconds, processed)``, has not moved for ``patience``
    seconds up to the last sample."""
    if not samples:
        return False
    last_time, last_count = samples[-1]
    since = last_time
    for at, count in reversed(samples):
        if count != last_count:
            break
        since = at
    return last_time - since >= patience


def api(base: str, key: str, path: str, **query: object) -> Any:
    """GET ``/api/<path>`` with the key; the decoded JSON."""
    params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    request = urllib.request.Request(
        f"{base}/api/{path}" + (f"?{params}" if params else ""), headers={"x-functions-key": key}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_processed(
    name: str,
    read: Callable[[], int],
    target: int,
    *,
    patience: float,
    deadline: float,
    say: Callable[[str], None] = print,
) -> tuple[int, float]:
    """Poll ``read()`` until it reaches ``target``; print progress; raise :class:`StalledError` with
    the count missing when nothing moves for ``patience`` seconds or ``deadline`` passes."""
    samples: list[tuple[float, int]] = []
    started = last_said = time.monotonic()
    while True:
        now, processed = time.monotonic(), read()
        samples.append((now, processed))
        if processed >= target:
            return processed, now
        if now - last_said >= PROGRESS_EVERY:
            rate = processed / (now - started) if now > started else 0.0
            say(f"  {name}: {processed:,} of {target:,} processed ({rate:,.0f}/s)")
            last_said = now
        if stalled(samples, patience) or now > deadline:
            why = f"nothing processed for {patience:g} s" if now <= deadline else "out of time"
            raise StalledError(f"{name}: {target - processed:,} of {target:,} tasks missing ({why})")
        samples = [s for s in samples if now - s[0] <= patience + 1]
        time.sleep(0.05)


def whereabouts(base: str, key: str) -> list[str]:
    """Where the missing tasks are: backlog and dead letters from the stats, then tasks by status."""
    stats = api(base, key, "stats")
    backlog, totals = stats.get("backlog"), stats["totals"]
    lines = []
    if backlog:
        lines.append(
            f"queue {backlog['queue']}: {backlog['active']:,} waiting, {backlog['dead_lettered']:,} "
            f"dead-lettered, {backlog.get('scheduled') or 0:,} scheduled "
            f"(as of {backlog.get('age_seconds', 0):.0f} s ago)"
        )
    lines.append(
        f"totals: {totals['accepted']:,} accepted, {totals['processed']:,} processed, "
        f"{totals['failed']:,} failed, {totals['dead_lettered']:,} dead-lettered"
    )
    counts = [f"{status} {_count(base, key, status)}" for status in STATUSES]
    lines.append("tasks by status: " + ", ".join(counts))
    return lines


def _count(base: str, key: str, status: str) -> str:
    page = api(base, key, "tasks", status=status, limit=_PAGE)
    found = len(page["tasks"])
    return f"{found}+" if page.get("cursor") else str(found)
