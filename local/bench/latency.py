"""Latency percentiles, the one way every figure of the bench reads them.

Nearest rank: the p-th percentile of n samples is the smallest sample with at least p % of the samples
at or below it. It is always a measured value (never interpolated), and p99.9 of 1,000 samples is the
largest: too few samples cannot hide the tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: The percentiles reported, by name.
REPORTED = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9}


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p ≤ 100) of ``ordered`` (sorted ascending)."""
    if not ordered:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is in (0, 100], not {p:g}")
    # Rounded first so that float noise (99.9 / 100 * 1000 = 999.0000000000001) cannot add a rank.
    rank = math.ceil(round(p / 100 * len(ordered), 9))
    return ordered[max(rank, 1) - 1]


def summary_ms(latencies_us: Sequence[int]) -> dict[str, float]:
    """p50, p99 and p99.9 in milliseconds of latencies given in microseconds; empty without samples."""
    if not latencies_us:
        return {}
    ordered = sorted(latencies_us)
    return {name: round(percentile(ordered, p) / 1000, 2) for name, p in REPORTED.items()}
