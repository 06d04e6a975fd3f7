"""Several worker processes, as ``FUNCTIONS_WORKER_PROCESS_COUNT`` asks of the Functions host.

One Python process uses one core. With more, the host forks after indexing and binding the HTTP
port, so every worker serves the same socket (the kernel spreads connections) and runs its own
trigger listeners: each RabbitMQ or Service Bus listener takes its share of the queue, and a timer
still fires once, through the same blob lease that keeps it single across hosts. Clients are built
lazily by the app, so nothing connected is shared across the fork.

The parent forwards SIGINT and SIGTERM to the workers and waits for them; if one worker fails,
the others are stopped and the host exits with that failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

#: The Functions host's own ceiling for FUNCTIONS_WORKER_PROCESS_COUNT.
MAX_WORKERS = 10


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Fork ``count`` workers that each run ``serve``; the first failing exit code, else 0."""
    count = min(count, MAX_WORKERS)
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(_child(serve))
        children.append(pid)
    log.info("Started %d worker processes: %s", count, ", ".join(map(str, children)))

    def forward(signum: int, frame: FrameType | None) -> None:
        for child in children:
            _signal(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = 0
    remaining = set(children)
    while remaining:
        pid, status = os.wait()
        remaining.discard(pid)
        child_code = os.waitstatus_to_exitcode(status)
        if child_code != 0 and code == 0:
            code = child_code if child_code > 0 else 1
            log.error("Worker %d exited with %d; stopping the others", pid, child_code)
            for other in remaining:
                _signal(other, signal.SIGTERM)
    return code


def _child(serve: Callable[[], int]) -> int:
    # The parent's handlers forward signals; a worker handles its own in its event loop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return serve()
    except BaseException:
        traceback.print_exc(file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has exited already
        os.kill(pid, signum)
