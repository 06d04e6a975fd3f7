"""Latency histograms with fixed log-spaced buckets: cheap to count in Valkey, good to ~10 %.

A value is counted in the first bucket whose upper bound holds it; percentiles are read back as
that bound, so a reported p99 is never below the true one by more than one bucket's width.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

#: Upper bounds in seconds: 0.1 ms to ~1 h, twelve buckets per decade (≈ 21 % apart).
BOUNDS: tuple[float, ...] = tuple(10 ** (-4 + i / 12) for i in range(0, 12 * 8 + 1))


def bucket(seconds: float) -> int:
    """The bucket index for ``seconds`` (values past the last bound share the last bucket)."""
    return min(bisect.bisect_left(BOUNDS, max(seconds, 0.0)), len(BOUNDS) - 1)


def percentiles(counts: Mapping[int, int], quantiles: Sequence[float]) -> dict[float, float | None]:
    """Each quantile (0..1) as the upper bound of the bucket that holds it; ``None`` with no data."""
    total = sum(counts.values())
    if total == 0:
        return {q: None for q in quantiles}
    ordered = sorted(counts.items())
    found: dict[float, float | None] = {}
    for q in quantiles:
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                found[q] = BOUNDS[index]
                break
    return found
