"""The one backoff of the host's triggers: capped exponential, half of it random."""

from __future__ import annotations

import pytest

from shared.platform.backoff import backoff_delay


@pytest.mark.parametrize(
    ("attempt", "jitter", "seconds"),
    [(1, 0.0, 0.5), (1, 1.0, 1.0), (3, 0.5, 3.0), (10, 1.0, 60.0), (10_000, 0.0, 30.0)],
)
def test_backoff_grows_to_a_cap_with_half_of_it_random(attempt: int, jitter: float, seconds: float) -> None:
    # Service Bus receives: base 1 s, cap 60 s
    assert backoff_delay(attempt, jitter) == seconds


@pytest.mark.parametrize(
    ("attempt", "jitter", "seconds"),
    [
        (1, 0.0, 0.25),
        (1, 1.0, 0.5),
        (4, 0.5, 3.0),
        (7, 0.0, 15.0),  # 0.5 * 64 = 32 is past the cap
        (7, 1.0, 30.0),
        (10_000, 1.0, 30.0),  # never overflows
        (3, 7.0, 2.0),  # jitter outside [0, 1] is clamped
    ],
)
def test_reconnect_backoff_with_a_smaller_base_and_cap(attempt: int, jitter: float, seconds: float) -> None:
    # RabbitMQ reconnects: base 0.5 s, cap 30 s
    assert backoff_delay(attempt, jitter, base=0.5, cap=30.0) == pytest.approx(seconds)
