"""How long to wait before trying again after a failure: one rule for the host and the app.

Capped exponential with "equal jitter": half the ceiling is fixed, so a failing dependency is never
hammered; half is random, so several hosts do not retry in lockstep. The host's Service Bus trigger
uses it between failed receives, its RabbitMQ trigger between reconnects, and the pipeline between a
task's attempts and while Valkey is unreachable.
"""

from __future__ import annotations


def backoff_delay(attempt: int, jitter: float, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based) after a failure; ``jitter`` drawn from ``[0, 1]``.

    The ceiling is ``base`` doubled after each failure, at most ``cap``; ``jitter`` outside
    ``[0, 1]`` is clamped.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))  # the bound keeps the float finite
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)
