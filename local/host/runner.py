"""``python -m local start``: load settings, index the app, serve HTTP and run the triggers.

The order follows the Functions host: settings first (so ``%Setting%`` resolves), then indexing,
then listeners; on SIGINT/SIGTERM every listener stops taking work and hands back what it has not
finished, the HTTP server drains, and connections close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import re
import signal
import socket
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from local.host.console import HOST_STDERR, HOST_STDOUT
from local.host.errors import AppLoadError, FunctionMetadataError, HostError, IndexingError, rpc_exception
from local.host.http.keys import KeyRing, ensure_host_key
from local.host.http.protocol import KEEP_ALIVE_SECONDS, LimitedHttpToolsProtocol
from local.host.http.server import DEFAULT_BODY_LIMIT, HttpFront, http_routes
from local.host.indexing import IndexedFunction, index, load_app
from local.host.invoker import HTTP_REASON, Invoker
from local.host.keyvault import resolve_references
from local.host.logs import configure_app_logging, configure_logging, drain_logging, flush_logging
from local.host.settings import (
    HostConfig,
    apply_to_environment,
    environment,
    read_local_settings,
    thread_pool_size,
    worker_process_count,
)
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
    host_config = HostConfig.load(app_dir, environ)
    configure_app_logging(host_config.document, environ)
    indexed, errors = index(load_app(app_dir, environ), app_dir, environ)
    invoker = Invoker(thread_count=thread_pool_size(environ), timeout=host_config.function_timeout_seconds)
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
    # The host validates routes with the function's metadata (ScriptHost.ValidateFunction): "in error".
    loaded.errors += [FunctionMetadataError(e.function_name, e.reason) for e in route_errors]
    failed = {e.function_name for e in route_errors}
    loaded.http_functions = [fn for fn in loaded.http_functions if fn.name not in failed]
    if any(
        str(fn.trigger.get("authLevel", "function")).lower() != "anonymous" for fn in loaded.http_functions
    ):
        loaded.keys_file = ensure_host_key(app_dir, environ)
    keys = KeyRing.from_settings(environ, [fn.name for fn in loaded.http_functions])
    body_limit = _int_setting(environ, "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT") or DEFAULT_BODY_LIMIT
    loaded.front = HttpFront(
        loaded.http_functions,
        routes,
        keys,
        invoker,
        body_limit=body_limit,
        # What the admin API (POST /admin/functions/{name}) may run by hand, as a host API call.
        other_functions=[listener.function for listener in loaded.listeners],
        run_by_hand=functools.partial(invoker.invoke, reason=HTTP_REASON),
    )
    return loaded


def _int_setting(environ: MutableMapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise HostError(f"{name}='{raw}' is not a whole number")
    return int(raw)


def function_list(loaded: LoadedHost, base_url: str) -> str:
    """The function list as ``func start`` prints it (DisplayFunctionsInfoUtilities, Core Tools).

    HTTP functions first, as ``name: [GET,POST] <url>``, the methods left out (two spaces) when the
    function declares none; then every other function as ``name: <trigger type>``.
    """
    if not loaded.http_functions and not loaded.listeners:
        return ""
    prefix = loaded.host_config.route_prefix
    prefix = f"{prefix}/" if prefix else ""
    lines = ["", "Functions:", ""]
    for fn in loaded.http_functions:
        methods = fn.trigger.get("methods")
        shown = f"[{','.join(str(m).upper() for m in methods)}]" if methods else ""
        route = fn.trigger.get("route") or fn.name
        lines += [f"\t{fn.name}: {shown} {base_url}/{prefix}{route}", ""]
    for listener in loaded.listeners:
        lines += [f"\t{listener.function.name}: {listener.function.trigger.type}", ""]
    return "\n".join(lines)


#: What the WebJobs host says when no function could be indexed.
NO_JOB_FUNCTIONS = (
    "No job functions found. Try making your job classes and methods public. If you're using binding"
    " extensions (e.g. Azure Storage, ServiceBus, Timers, etc.) make sure you've called the registration"
    " method for the extension(s) in your startup code (e.g. builder.AddAzureStorage(),"
    " builder.AddServiceBus(), builder.AddTimers(), etc.)."
)


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
        # Its records go through the host's handler, not handlers of its own on the (captured) stderr.
        log_config=None,
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
            await loaded.front.drain()  # functions the admin API started
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


def run(app_dir: Path, port: int | None = None) -> int:
    """Start the host for ``app_dir``; the process exit code."""
    try:
        configure_logging(os.environ.get("TASKLANE_LOG_LEVEL", "INFO"))
    except HostError as exc:
        print(f"Error: {exc}", file=HOST_STDERR)
        return 1
    environ = environment()
    app_dir = app_dir.resolve()
    try:
        loaded = load(app_dir, environ)
        processes = worker_process_count(environ)
    except AppLoadError as exc:
        if exc.__cause__ is not None:
            log.error("Worker failed to index functions\n%s", rpc_exception(exc.__cause__))
        log.warning(NO_JOB_FUNCTIONS)
        reason = "the worker failed to index the app (above)" if exc.__cause__ is not None else str(exc)
        return _fail(f"{reason}; the host stops where func start would run without functions")
    except HostError as exc:
        return _fail(str(exc))
    for error in loaded.errors:
        error.report(log)
    if not loaded.http_functions and not loaded.listeners:
        log.warning(NO_JOB_FUNCTIONS)
        return _fail("no function could be indexed; nothing to run")
    local_port = port or loaded.local_http_port or DEFAULT_PORT
    drain_logging()  # the indexing errors before the list, as func start shows them
    print(function_list(loaded, f"http://localhost:{local_port}"), file=HOST_STDOUT, flush=True)
    if loaded.keys_file is not None:
        print(
            f"Function key: generated in {loaded.keys_file} (print it with `python -m local keys`)\n",
            file=HOST_STDOUT,
            flush=True,
        )
    try:
        http_socket = bind(local_port)
    except HostError as exc:
        return _fail(str(exc))
    settle_memory()
    if processes > 1:
        from local.host.workers import run_workers

        return run_workers(processes, lambda: serve_forever(loaded, http_socket))
    return serve_forever(loaded, http_socket)


#: The young generation's collection threshold while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_memory() -> None:
    """Once the app is indexed: move everything loaded so far out of the collector's sight, and
    collect the young generation less often.

    Under load CPython's defaults run a young collection every few requests and a full one every
    few seconds over every module, function and client the host and the app hold, none of them
    garbage: 1.5 s spent in collections per 15,000 bench tasks, 0.01 s with this. Frozen before a
    fork, those objects also stay shared with the worker processes. Garbage cycles are still
    collected, only later.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def _fail(message: str) -> int:
    flush_logging()
    print(f"Error: {message}", file=HOST_STDERR, flush=True)
    return 1


def serve_forever(loaded: LoadedHost, http_socket: socket.socket) -> int:
    """Serve in this process until stopped; the exit code."""
    try:
        run_loop(serve(loaded, http_socket))
    except HostError as exc:
        flush_logging()
        print(f"Error: {exc}", file=HOST_STDERR, flush=True)
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
