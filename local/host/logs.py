"""The host's log on stderr, line for line as ``func start`` prints it.

Core Tools writes each record as ``[2024-05-06T12:00:00.123Z] message`` (UTC, milliseconds), with
neither level nor category, and every line of a multi-line message (a failure's stack) gets the
same prefix (``ColoredConsoleLogger.LogToConsole``, azure-functions-core-tools). Which records get
there is :mod:`local.host.log_routing`'s decision; the app's stdout and stderr become records too
(:mod:`local.host.console`).

``TASKLANE_LOG_LEVEL`` sets the host's own verbosity (``--verbose`` in Core Tools' terms): a level
for ``local.host``, then ``logger=LEVEL`` pairs; a logger named there is shown as the host's own,
inside invocations or not. Records go through a bounded queue to a writer thread, so a slow
terminal never holds up the event loop.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import time
from collections.abc import Mapping

from local.host import console
from local.host.errors import HostError
from local.host.log_routing import ROUTING, CategoryLevels, is_true_like

#: Libraries that log every AMQP frame or HTTP request: at WARNING whatever the level, unless named.
QUIET_LIBRARIES = ("aio_pika", "aiormq", "pamqp", "azure", "uamqp")
#: The host's libraries: their records outside an invocation are the host's, not the app's.
HOST_LIBRARIES = (*QUIET_LIBRARIES, "uvicorn", "asyncio", "shared.platform")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Log records waiting for stderr before the host drops lines.
LOG_BACKLOG = 10_000


def parse_log_levels(spec: str) -> tuple[str, dict[str, str]]:
    """``TASKLANE_LOG_LEVEL``: a level, then ``logger=LEVEL`` pairs, comma-separated.

    ``"DEBUG,aiormq=DEBUG,Function=WARNING"`` is DEBUG for the host, AMQP frames too, and no
    invocation lines; a pair names a logger and everything under it.
    """
    root = "INFO"
    named: dict[str, str] = {}
    for part in filter(None, (item.strip() for item in spec.split(","))):
        name, _, level = part.rpartition("=")
        level = level.strip().upper()
        if level not in _LEVELS:
            raise HostError(
                f"TASKLANE_LOG_LEVEL={spec!r}: {level or part!r} is not a level ({', '.join(_LEVELS)})"
            )
        if name.strip():
            named[name.strip()] = level
        else:
            root = level
    return root, named


class ConsoleFormatter(logging.Formatter):
    """``[yyyy-MM-ddTHH:mm:ss.fffZ] `` before each line of the message, the time in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}.{int(record.msecs):03d}Z"
        return "\n".join(f"[{stamp}] {line}" for line in text.split("\n"))


def configure_logging(spec: str) -> None:
    """Log to stderr as Core Tools does, the host at the levels ``spec`` names; capture stdout/stderr.

    The app's records start at INFO, the worker's level, until :func:`configure_app_logging`.
    """
    root, named = parse_log_levels(spec)
    stream = logging.StreamHandler(console.HOST_STDERR)
    stream.setFormatter(ConsoleFormatter())
    handler = _DroppingQueueHandler(queue.Queue(LOG_BACKLOG), stream)
    handler.setFormatter(logging.Formatter("%(message)s"))  # the message with its traceback, if any
    ROUTING.configure(host_loggers=(*HOST_LIBRARIES, *named))
    handler.addFilter(ROUTING)
    logging.basicConfig(level=min(logging.INFO, logging.getLevelName(root)), handlers=[handler], force=True)
    logging.getLogger("local.host").setLevel(root)
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)
    console.capture()


def configure_app_logging(host_json: Mapping[str, object], environ: Mapping[str, str]) -> None:
    """host.json's ``logging.logLevel`` and the worker's ``PYTHON_ENABLE_DEBUG_LOGGING``, once read."""
    debug = is_true_like(environ.get("PYTHON_ENABLE_DEBUG_LOGGING"))
    ROUTING.configure_app(CategoryLevels.from_host_json(host_json), debug_logging=debug)
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """A queue handler whose writer thread follows the process across ``fork``; once stopped, it
    writes in place."""

    def __init__(self, records: queue.Queue[logging.LogRecord], target: logging.Handler) -> None:
        super().__init__(records)
        self._target = target
        self._dropped = 0
        self._writer: _Writer | None = self._listen()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.stop)

    def _listen(self) -> _Writer:
        writer = _Writer(self.queue, self._target)
        writer.start()
        return writer

    def _after_fork(self) -> None:  # the writer thread does not exist in the child: start its own
        self.queue = queue.Queue(LOG_BACKLOG)
        self._writer = self._listen()

    @property
    def writing(self) -> bool:
        return self._writer is not None

    def stop(self) -> None:
        """Write out what is queued; later records are written in place."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._writer is None:
            self._target.handle(record)
            return
        if self._dropped:
            note = logging.makeLogRecord(
                {
                    "name": __name__,
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"{self._dropped} log lines dropped: stderr is not read fast enough",
                }
            )
            try:
                self.queue.put_nowait(note)
            except queue.Full:
                self._dropped += 1
                return
            self._dropped = 0
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._dropped += 1


class _Writer(logging.handlers.QueueListener):
    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # waits for room, unlike put_nowait


def drain_logging() -> None:
    """Wait until every queued line is written; the writer keeps running."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _DroppingQueueHandler) and handler.writing:
            handler.queue.join()  # type: ignore[attr-defined]


def flush_logging() -> None:
    """Write out every queued log line (before a worker process ends with ``os._exit``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _DroppingQueueHandler):
            handler.stop()
