"""Hosts whose output is read while they run.

``tests.hosting.start_host`` pipes a host's output and reads it only when the host stops; a host that
logs more than a pipe holds (64 KiB: a minute of tracebacks during a broker outage) then blocks on
its next log line, event loop and all. Fault tests make hosts log a lot, so a thread reads each
host's output as it comes, and :func:`stop` waits for that thread instead of ``communicate()``.
"""

from __future__ import annotations

import signal
import subprocess
import threading

from tests.hosting import RunningHost

_readers: dict[int, threading.Thread] = {}


def read_output(host: RunningHost) -> RunningHost:
    """Keep reading ``host``'s output into ``host.output`` until it exits."""
    stream = host.process.stdout
    assert stream is not None

    def read() -> None:
        for line in stream:
            host.output.append(line)

    reader = threading.Thread(target=read, daemon=True, name=f"host-{host.process.pid}-output")
    reader.start()
    _readers[host.process.pid] = reader
    return host


def stop(host: RunningHost, timeout: float = 30) -> int:
    """SIGTERM (unless it already exited), wait for the exit and the last of its output; its code."""
    if host.process.poll() is None:
        host.process.send_signal(signal.SIGTERM)
    try:
        host.process.wait(timeout)
    except subprocess.TimeoutExpired:
        host.process.kill()
        host.process.wait()
    reader = _readers.pop(host.process.pid, None)
    if reader is not None:
        reader.join(5)
    return host.process.returncode
