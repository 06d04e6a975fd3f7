"""The app's stdout and stderr as the Functions host reads a worker's: one log line per line.

The host reads the worker process's pipes line by line and logs each non-empty line under
``Host.Function.Console``: stdout at Information; stderr at Warning when it says "warn", at Error
when it says "error", "fail", "severe" or "unhandled exception", else Information
(``WorkerProcess.ParseErrorMessageAndLog``). So ``print()`` in a function reads ``[time] text``
in ``func start``, from any thread and outside invocations too. The host keeps the real streams
for its own output (the function list, its errors).
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading
from typing import BinaryIO, TextIO

from local.host.log_routing import CONSOLE_CATEGORY

_ERROR_WORDS = ("error", "fail", "severe", "unhandled exception")

#: The process's streams before capture: where the host writes its own lines.
HOST_STDOUT: TextIO = sys.stdout
HOST_STDERR: TextIO = sys.stderr


def stderr_level(line: str) -> int:
    """The level the host gives a line the worker wrote to stderr."""
    lowered = line.lower()
    if "warn" in lowered:
        return logging.WARNING
    if any(word in lowered for word in _ERROR_WORDS):
        return logging.ERROR
    return logging.INFO


class ConsoleStream(io.TextIOBase):
    """A stand-in for ``sys.stdout``/``sys.stderr`` that logs each complete line.

    A partial line waits for its newline (the host reads whole lines), and whatever is left is
    logged at exit. A write made while logging a line (a handler's own error report) goes to the
    real stream, so the two can never feed each other.
    """

    def __init__(self, original: TextIO, *, errors_stream: bool) -> None:
        super().__init__()
        self._original = original
        self._errors_stream = errors_stream
        self._logger = logging.getLogger(CONSOLE_CATEGORY)
        self._pending = ""
        self._lock = threading.Lock()
        self._busy = threading.local()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._original.encoding

    @property
    def buffer(self) -> BinaryIO:
        """The real stream's bytes: what is written there bypasses the log, as in a raw write."""
        return self._original.buffer

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._busy, "on", False):
            return self._original.write(text)
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
        self._log(lines)
        return len(text)

    def flush(self) -> None:
        """Nothing to do: a line is logged when it is complete."""

    def drain(self) -> None:
        """Log what is left of an unfinished line."""
        with self._lock:
            rest, self._pending = self._pending, ""
        self._log([rest])

    def _log(self, lines: list[str]) -> None:
        self._busy.on = True
        try:
            for line in lines:
                line = line.rstrip("\r")
                if not line:  # Core Tools prints no empty message
                    continue
                level = stderr_level(line) if self._errors_stream else logging.INFO
                self._logger.log(level, "%s", line)
        finally:
            self._busy.on = False


def capture() -> None:
    """Replace ``sys.stdout`` and ``sys.stderr`` with :class:`ConsoleStream` (once)."""
    if isinstance(sys.stdout, ConsoleStream):
        return
    out = ConsoleStream(HOST_STDOUT, errors_stream=False)
    err = ConsoleStream(HOST_STDERR, errors_stream=True)
    sys.stdout, sys.stderr = out, err
    atexit.register(err.drain)
    atexit.register(out.drain)
