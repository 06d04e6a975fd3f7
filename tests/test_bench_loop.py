"""The bench loop tells the developer what it is doing: progress, a stall named with what is missing,
and a taken port refused at once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from local.bench import progress
from local.bench.progress import StalledError, stalled, wait_processed
from tests.hosting import ROOT


@pytest.mark.parametrize(
    ("samples", "patience", "expected"),
    [
        ([], 5, False),
        ([(0.0, 0)], 5, False),
        ([(0.0, 10), (4.9, 10)], 5, False),
        ([(0.0, 10), (5.0, 10)], 5, True),
        ([(0.0, 0), (3.0, 10), (7.0, 10)], 5, False),  # moved at 3 s: still 4 s of patience used
        ([(0.0, 0), (3.0, 10), (8.0, 10)], 5, True),
        ([(0.0, 10), (6.0, 10), (6.5, 11)], 5, False),  # it moved again
    ],
)
def test_a_stall_is_no_progress_for_the_whole_patience(
    samples: list[tuple[float, int]], patience: float, expected: bool
) -> None:
    assert stalled(samples, patience) is expected


def test_waiting_reports_progress_then_gives_up_naming_the_missing_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a count that climbs to 60 of 100, then stops
    monkeypatch.setattr(progress, "PROGRESS_EVERY", 0.05)
    counts: Iterator[int] = iter([*range(0, 61, 10)])
    last = [0]

    def read() -> int:
        last[0] = next(counts, last[0])
        return last[0]

    said: list[str] = []
    started = time.monotonic()
    # When the bench waits for all 100 with half a second of patience
    with pytest.raises(StalledError) as stall:
        wait_processed("single", read, 100, patience=0.5, deadline=started + 30, say=said.append)

    # Then it said how far it got, and gave up soon after progress stopped, naming what is missing
    assert time.monotonic() - started < 3
    assert any("of 100 processed" in line for line in said)
    assert str(stall.value) == "single: 40 of 100 tasks missing (nothing processed for 0.5 s)"


def test_waiting_returns_once_every_task_is_processed() -> None:
    counts = iter([5, 50, 100])
    processed, _ = wait_processed("batch", lambda: next(counts), 100, patience=5, deadline=1e12)
    assert processed == 100


def test_a_taken_port_is_refused_at_once_with_the_way_out() -> None:
    # Given something listening on the bench's port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When the bench is asked to use it
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", f"from local.bench.runner import main; main(['--port', '{port}'])"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    # Then it stops quickly, saying which port and how to choose another, and starts nothing
    assert result.returncode == 1
    assert f"error: port {port} is taken" in result.stderr
    assert "BENCH_ARGS='--port N'" in result.stderr
    assert time.monotonic() - started < 5
