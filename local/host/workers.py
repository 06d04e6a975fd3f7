"""Several worker processes, as ``FUNCTIONS_WORKER_PROCESS_COUNT`` asks of the Functions host.

One Python process uses one core. With more, the host forks after indexing and binding the HTTP
port, so every worker serves the same socket (the kernel spreads connections) and runs its own
trigger listeners: each RabbitMQ or Service Bus listener takes its share of the queue, and a timer
still fires once, through the same blob lease that keeps it single across hosts. Clients are built
lazily by the app, so nothing connected is shared across the fork.

A worker that dies (killed, crashed) is replaced, as the Functions host restarts a language worker
that exits. One that fails on its own right after it was started (a listener's configuration the
broker refuses) would only fail again: the others are stopped and the host exits with that failure,
as it does when workers keep dying faster than :data:`MAX_RESTARTS` in :data:`RESTART_WINDOW`.
The parent forwards SIGINT and SIGTERM to the workers and waits for them all.

Where this differs from the Functions host: it runs one host with N language workers, so each
trigger has one listener and the invocations are spread over the workers; here each worker is a
whole host, so a RabbitMQ trigger has N consumers with ``prefetchCount`` each, and a worker logs
its own start. Values are read as the host reads them (:func:`local.host.settings.worker_process_count`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from types import FrameType

from local.host.console import HOST_STDERR, HOST_STDOUT

log = logging.getLogger(__name__)

#: The Functions host's own ceiling for FUNCTIONS_WORKER_PROCESS_COUNT.
MAX_WORKERS = 10
#: A worker exiting with an error sooner than this after its start failed to start: not replaced.
START_SECONDS = 5.0
#: More replacements than this within the window is a crash loop: the host stops.
MAX_RESTARTS = 10
RESTART_WINDOW = 60.0


class _Pool:
    """The running workers, by pid with their start time, and whether the host is stopping."""

    def __init__(self, serve: Callable[[], int]) -> None:
        self.serve = serve
        self.workers: dict[int, float] = {}
        self.stopping = False
        self.restarts: deque[float] = deque(maxlen=MAX_RESTARTS)

    def fork(self) -> int:
        pid = os.fork()
        if pid == 0:
            os._exit(_child(self.serve))
        self.workers[pid] = time.monotonic()
        if self.stopping:  # a stop that came while forking missed it
            _signal(pid, signal.SIGTERM)
        return pid

    def signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            _signal(pid, signum)

    def may_replace(self, code: int, started: float) -> bool:
        """Whether a worker that ended with ``code`` is replaced rather than ending the host."""
        now = time.monotonic()
        if code > 0 and now - started < START_SECONDS:
            return False  # it failed to start; another would too
        if len(self.restarts) == MAX_RESTARTS and now - self.restarts[0] < RESTART_WINDOW:
            return False
        self.restarts.append(now)
        return True


def run_workers(count: int, serve: Callable[[], int]) -> int:
    """Fork ``count`` workers that each run ``serve``, replacing any that dies; the exit code."""
    pool = _Pool(serve)
    for _ in range(min(count, MAX_WORKERS)):
        pool.fork()
    log.info("Started %d worker processes: %s", len(pool.workers), ", ".join(map(str, pool.workers)))

    def forward(signum: int, frame: FrameType | None) -> None:
        pool.stopping = True
        pool.signal_all(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    code = 0
    while pool.workers:
        pid, status = os.wait()
        started = pool.workers.pop(pid, None)
        if started is None:
            continue
        child_code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-child_code}" if child_code < 0 else f"exited with {child_code}"
        if pool.stopping:
            if child_code != 0 and code == 0:
                code = child_code if child_code > 0 else 1
            continue
        if pool.may_replace(child_code, started):
            log.warning("Worker %d %s; started worker %d in its place", pid, how, pool.fork())
            continue
        code = child_code if child_code > 0 else 1
        log.error("Worker %d %s; stopping the others", pid, how)
        pool.stopping = True
        pool.signal_all(signal.SIGTERM)
    return code


def _child(serve: Callable[[], int]) -> int:
    # The parent's handlers forward signals; a worker handles its own in its event loop.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        return serve()
    except BaseException:
        traceback.print_exc(file=HOST_STDERR)  # the host's own failure: not one of the app's lines
        return 1
    finally:
        HOST_STDOUT.flush()
        HOST_STDERR.flush()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has exited already
        os.kill(pid, signum)
