"""``python -m local start``: load settings, index the app, serve HTTP and run the triggers.

The order follows the Functions host: settings first (so ``%Setting%`` resolves), then indexing,
then listeners; on SIGINT/SIGTERM every listener stops taking work and hands back what it has not
finished, the HTTP server drains, and connections close.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import logging.handlers
import os
import queue
import re
import signal
import socket
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from local.host.errors import AppLoadError, HostError, IndexingError
from local.host.http.keys import KeyRing, ensure_host_key
from local.host.http.protocol import KEEP_ALIVE_SECONDS, LimitedHttpToolsProtocol
from local.host.http.server import DEFAULT_BODY_LIMIT, HttpFront, http_routes
from local.host.indexing import IndexedFunction, index, load_app
from local.host.invoker import Invoker
from local.host.keyvault import resolve_references
from local.host.settings import HostConfig, apply_to_environment, environment, read_local_settings
from local.host.triggers import Listener, ListenerContext, build_listener
from local.host.triggers.retrying import RetryingListener

log = logging.getLogger(__name__)

DEFAULT_PORT = 7071


@dataclass
class LoadedHost:
    """Everything indexing produced: what serves HTTP, what listens, what failed."""

    app_dir: Path
    host_config: HostConfig
    http_functions: list[IndexedFunction] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    errors: list[IndexingError] = field(default_factory=list)
    invoker: Invoker | None = None
    front: HttpFront | None = None
    keys_file: Path | None = None
    #: ``Host.LocalHttpPort`` from local settings, when they set one.
    local_http_port: int | None = None


def host_id(app_dir: Path, environ: MutableMapping[str, str]) -> str:
    """The host id: ``AzureFunctionsWebHost__hostid``, else derived from the app folder's name.

    Hosts of the same app share it, which is what makes a timer fire once across them.
    """
    configured = environ.get("AzureFunctionsWebHost__hostid")
    if configured:
        return configured
    slug = re.sub(r"[^a-z0-9-]", "-", app_dir.resolve().name.lower()).strip("-") or "app"
    return slug[:32]


def load(app_dir: Path, environ: MutableMapping[str, str]) -> LoadedHost:
    """Apply local settings, import and index the app, and build its HTTP front and listeners."""
    local_settings = read_local_settings(app_dir)
    kept = apply_to_environment(local_settings, environ)
    # As the platform does before the worker starts: bindings and the app see the secrets' values.
    resolve_references(environ)
    if local_settings.source:
        log.info("Settings from %s (%d kept from the environment)", local_settings.source.name, len(kept))
    host_config = HostConfig.load(app_dir)
    indexed, errors = index(load_app(app_dir, environ), app_dir, environ)
    invoker = Invoker(
        thread_count=_int_setting(environ, "PYTHON_THREADPOOL_THREAD_COUNT"),
        timeout=host_config.function_timeout_seconds,
    )
    loaded = LoadedHost(
        app_dir, host_config, errors=errors, invoker=invoker, local_http_port=local_settings.local_http_port
    )
    context = ListenerContext(invoker, host_config, environ, host_id(app_dir, environ))
    for fn in indexed:
        if fn.trigger.type == "httpTrigger":
            loaded.http_functions.append(fn)
            continue
        try:
            loaded.listeners.append(RetryingListener(build_listener(fn, context)))
        except HostError as exc:
            loaded.errors.append(exc if isinstance(exc, IndexingError) else IndexingError(fn.name, str(exc)))
    routes, route_errors = http_routes(loaded.http_functions, host_config.route_prefix)
    loaded.errors += route_errors
    failed = {e.function_name for e in route_errors}
    loaded.http_functions = [fn for fn in loaded.http_functions if fn.name not in failed]
    if any(
        str(fn.trigger.get("authLevel", "function")).lower() != "anonymous" for fn in loaded.http_functions
    ):
        loaded.keys_file = ensure_host_key(app_dir, environ)
    keys = KeyRing.from_settings(environ, [fn.name for fn in loaded.http_functions])
    body_limit = _int_setting(environ, "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT") or DEFAULT_BODY_LIMIT
    loaded.front = HttpFront(loaded.http_functions, routes, keys, invoker, body_limit=body_limit)
    return loaded


def _int_setting(environ: MutableMapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise HostError(f"{name}='{raw}' is not a whole number")
    return int(raw)


def function_list(loaded: LoadedHost, base_url: str) -> str:
    """The function list as ``func start`` prints it, with queues and schedules added."""
    prefix = loaded.host_config.route_prefix
    lines = ["", "Functions:", ""]
    for fn in loaded.http_functions:
        methods = ",".join(str(m).upper() for m in fn.trigger.get("methods") or ()) or "ALL"
        route = (fn.trigger.get("route") or fn.name).strip("/")
        path = f"{prefix}/{route}" if prefix else route
        level = str(fn.trigger.get("authLevel") or "function").lower()
        lines += [f"\t{fn.name}: [{methods}] {base_url}/{path}  (auth: {level})", ""]
    for listener in loaded.listeners:
        lines += [f"\t{listener.function.name}: {listener.describe()}", ""]
    for error in loaded.errors:
        lines += [f"\t{error.function_name}: ERROR {error.reason}", ""]
    return "\n".join(lines)


async def serve(
    loaded: LoadedHost, http_socket: socket.socket, *, ready: asyncio.Event | None = None
) -> None:
    """Run the HTTP front and every listener until SIGINT/SIGTERM (or the task is cancelled)."""
    assert loaded.front is not None
    assert loaded.invoker is not None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    config = uvicorn.Config(
        loaded.front,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # No proxy in front of a local host: skip the middleware that rewrites client addresses.
        proxy_headers=False,
        # httptools, with Kestrel's limits on request headers (size, time) in front of it.
        http=LimitedHttpToolsProtocol,
        # Idle keep-alive connections are closed after this many seconds (before a first request too).
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        loop="none",
        timeout_graceful_shutdown=30,
    )
    server = _Server(config)
    started: list[Listener] = []
    server_task: asyncio.Task[None] | None = None  # made once every listener has started
    try:
        for listener in loaded.listeners:
            await listener.start()
            started.append(listener)
        server_task = asyncio.create_task(server.serve(sockets=[http_socket]))
        # uvicorn exposes `started` as a flag, not an event.
        while not server.started and not server_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server_task.done():
            server_task.result()
            raise HostError(f"the HTTP server on {http_socket.getsockname()} did not start")
        log.info("Host started; press Ctrl+C to stop")
        if ready is not None:
            ready.set()
        await stopping.wait()
        log.info("Stopping: no new work is taken; in-flight work finishes or goes back to its queue")
    finally:
        # Stop taking messages and requests together, then let both drain.
        server.should_exit = True
        await asyncio.gather(*(listener.stop() for listener in started), return_exceptions=False)
        if server_task is not None:
            await server_task
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        loaded.invoker.close()
        log.info("Host stopped")


def bind(port: int) -> socket.socket:
    """Bind the HTTP port ourselves, so a port in use is a clear error rather than uvicorn's exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise HostError(f"port {port} is in use ({exc.strerror}); choose another with --port") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the host decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


#: Libraries that log every AMQP frame or HTTP request: at WARNING whatever the level, unless named.
QUIET_LIBRARIES = ("aio_pika", "aiormq", "pamqp", "azure", "uamqp")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


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


def configure_logging(spec: str) -> None:
    """Log ``[time] LEVEL logger: message`` to stderr at the levels ``spec`` names.

    Records go through a bounded queue to a writer thread: a terminal or pipe that is slow to read
    (or never read) delays the log, never the event loop, and past :data:`LOG_BACKLOG` records the
    host drops lines and later says how many, rather than stopping.
    """
    root, named = parse_log_levels(spec)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
    handler = _DroppingQueueHandler(queue.Queue(LOG_BACKLOG), stream)
    handler.setFormatter(logging.Formatter("%(message)s"))  # the stream adds time, level and logger
    logging.basicConfig(level=root, handlers=[handler], force=True)
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)


#: Log records waiting for stderr before the host drops lines.
LOG_BACKLOG = 10_000


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


def flush_logging() -> None:
    """Write out every queued log line (before a worker process ends with ``os._exit``)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _DroppingQueueHandler):
            handler.stop()


def run(app_dir: Path, port: int | None = None) -> int:
    """Start the host for ``app_dir``; the process exit code."""
    try:
        configure_logging(os.environ.get("TASKLANE_LOG_LEVEL", "INFO"))
    except HostError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    environ = environment()
    app_dir = app_dir.resolve()
    try:
        loaded = load(app_dir, environ)
    except AppLoadError as exc:
        cause = exc.__cause__
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        print(f"\nError: {exc}", file=sys.stderr)
        return 1
    except HostError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if not loaded.http_functions and not loaded.listeners:
        print(function_list(loaded, ""), file=sys.stderr)
        print("Error: no function could be indexed; nothing to run", file=sys.stderr)
        return 1
    local_port = port or loaded.local_http_port or DEFAULT_PORT
    print(function_list(loaded, f"http://localhost:{local_port}"), flush=True)
    if loaded.keys_file is not None:
        print(
            f"Function key: generated in {loaded.keys_file} (print it with `python -m local keys`)\n",
            flush=True,
        )
    try:
        http_socket = bind(local_port)
    except HostError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    processes = _int_setting(environ, "FUNCTIONS_WORKER_PROCESS_COUNT") or 1
    if processes > 1:
        from local.host.workers import run_workers

        return run_workers(processes, lambda: serve_forever(loaded, http_socket))
    return serve_forever(loaded, http_socket)


def serve_forever(loaded: LoadedHost, http_socket: socket.socket) -> int:
    """Serve in this process until stopped; the exit code."""
    try:
        run_loop(serve(loaded, http_socket))
    except HostError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    finally:
        flush_logging()
    return 0


def run_loop(main: object) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the standard loop works, only slower
        asyncio.run(main)  # type: ignore[arg-type]
        return
    uvloop.run(main)  # type: ignore[arg-type]
