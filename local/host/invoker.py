"""Run one invocation of a user function: arguments, event loop or thread pool, timeout, outputs.

Async functions run on the host's event loop; sync ones on a thread pool sized like the worker's
(``PYTHON_THREADPOOL_THREAD_COUNT``, default ``min(32, cpus + 4)``).

Each invocation logs the two lines the Functions host prints, under its category ``Function.<name>``
(host.json's ``"logLevel": {"Function": "Warning"}`` quiets them)::

    Executing 'Functions.health' (Reason='This function was programmatically called via the host APIs.', Id=…)
    Executed 'Functions.health' (Succeeded, Id=…, Duration=4ms)

A failure is the "Executed ... (Failed, ...)" line followed by the exception as Core Tools flattens
it: the host's "Exception while executing function" around the worker's ``Result: Failure``,
``Exception: <Type>: <message>`` and ``Stack:`` lines. While the function runs, its records (from
its task, the tasks it starts, its pool thread) are tagged with the invocation for the console.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local.host import log_routing
from local.host.context import Context, Out, TraceContext
from local.host.errors import FunctionFailedError, FunctionTimeoutError, rpc_exception
from local.host.indexing import Binding, IndexedFunction

#: The parent of every function's logger, ``Function.<name>``: the Functions host's log category.
FUNCTION_LOGGER = "Function"

HTTP_REASON = "This function was programmatically called via the host APIs."


def invocation_reason(trigger: Binding, now: datetime) -> str:
    """The ``Reason`` the Functions host gives for an invocation by ``trigger``, fired at ``now``.

    The wording is each extension's: the HTTP trigger is a host API call, the timer extension
    names the firing time (.NET's round-trip format), Service Bus names the entity path, the
    RabbitMQ extension the queue and the local time; other triggers set none (``(null)``).
    """
    if trigger.type == "httpTrigger":
        return HTTP_REASON
    if trigger.type == "timerTrigger":
        return f"Timer fired at {now.isoformat()}"
    if trigger.type == "serviceBusTrigger":
        queue = trigger.get("queueName")
        path = queue or f"{trigger.get('topicName')}/Subscriptions/{trigger.get('subscriptionName')}"
        return f"New ServiceBus message detected on '{path}'."
    if trigger.type == "rabbitMQTrigger":
        return f"RabbitMQ message detected from queue: {trigger.get('queueName')} at {now:%Y-%m-%d %H:%M:%S}"
    return "(null)"


@dataclass
class InvocationResult:
    """What a function produced: its return value and each named output binding that was set."""

    invocation_id: str
    value: Any
    outputs: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0


class Invoker:
    """Invokes indexed functions; one per host, shared by every trigger."""

    def __init__(self, *, thread_count: int | None = None, timeout: float | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=thread_count, thread_name_prefix="func")
        self._timeout = timeout
        self._loggers: dict[str, logging.Logger] = {}
        # The storage behind every context's thread_local_storage: its invocation_id tags a thread.
        self._thread_local = Context("", "", Path("."), TraceContext("", "", {})).thread_local_storage
        log_routing.use_thread_local(self._thread_local)

    def _logger(self, fn: IndexedFunction) -> logging.Logger:
        found = self._loggers.get(fn.name)
        if found is None:
            found = self._loggers[fn.name] = logging.getLogger(f"{FUNCTION_LOGGER}.{fn.name}")
            # host.json's level for the category on the logger itself (unless TASKLANE_LOG_LEVEL set a
            # higher one): a line it drops is never built.
            found.setLevel(max(log_routing.ROUTING.levels.minimum(found.name), found.getEffectiveLevel()))
        return found

    async def invoke(
        self,
        fn: IndexedFunction,
        inputs: Mapping[str, Any],
        *,
        trace_parent: str = "",
        trace_state: str = "",
        invocation_id: str | None = None,
        reason: str | None = None,
    ) -> InvocationResult:
        """Call ``fn`` with ``inputs`` by binding name; raise :class:`FunctionFailedError` if it fails.

        The failure is logged with the invocation id; callers decide what it means (500, requeue,
        abandon) and never see the user's exception text in a response. ``reason`` replaces the
        trigger's own in the Executing line (a run by hand through the admin API).
        """
        invocation_id = invocation_id or str(uuid.uuid4())
        outs: dict[str, Out[Any]] = {}
        kwargs: dict[str, Any] = {}
        for param in fn.parameters:
            if param in inputs:
                kwargs[param] = inputs[param]
            elif param == "context":
                kwargs[param] = Context(
                    invocation_id, fn.name, fn.directory, TraceContext(trace_parent, trace_state, {})
                )
            else:
                outs[param] = kwargs[param] = Out()
        log = self._logger(fn)
        if log.isEnabledFor(logging.INFO):  # at high load these lines are most of the host's output
            log.info(
                "Executing 'Functions.%s' (Reason='%s', Id=%s)",
                fn.name,
                reason or invocation_reason(fn.trigger, datetime.now().astimezone()),
                invocation_id,
            )
        started = time.perf_counter()
        log_routing.started(invocation_id, fn.name)
        try:
            try:
                value = await self._call(fn, kwargs, invocation_id)
                if value is not None and not fn.has_return:
                    # The worker's own check and message, missing space and all (dispatcher.py).
                    raise RuntimeError(
                        f"function {fn.name!r} without a $return bindingreturned a non-None value"
                    )
            except Exception as exc:
                log.error(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)\n%s",
                    fn.name,
                    invocation_id,
                    (time.perf_counter() - started) * 1000,
                    failure_details(fn.name, exc),
                )
                raise FunctionFailedError(fn.name, invocation_id) from exc
            duration = time.perf_counter() - started
            log.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
                fn.name,
                invocation_id,
                duration * 1000,
            )
        finally:
            log_routing.ended(invocation_id)
        outputs = {name: out.get() for name, out in outs.items() if out.is_set}
        return InvocationResult(invocation_id, value, outputs, duration)

    async def _call(self, fn: IndexedFunction, kwargs: dict[str, Any], invocation_id: str) -> Any:
        token = log_routing.enter(invocation_id)
        try:
            if fn.is_async:
                # As the worker: the loop's thread names the invocation that started last.
                self._thread_local.invocation_id = invocation_id
                call = fn.func(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                ctx = contextvars.copy_context()
                run = functools.partial(ctx.run, self._run_sync, invocation_id, fn.func, kwargs)
                call = loop.run_in_executor(self._pool, run)
            if self._timeout is None:
                return await call
            # asyncio.timeout, not wait_for: it cancels in place instead of wrapping the call in a task.
            deadline = asyncio.timeout(self._timeout)
            try:
                async with deadline:
                    return await call
            except TimeoutError as exc:
                if not deadline.expired():
                    raise  # the function's own TimeoutError
                raise FunctionTimeoutError(fn.name, self._timeout) from exc
        finally:
            log_routing.leave(token)

    def _run_sync(self, invocation_id: str, func: Any, kwargs: dict[str, Any]) -> Any:
        # As the worker's _run_sync_func: the pool thread carries the invocation while it runs.
        self._thread_local.invocation_id = invocation_id
        try:
            return func(**kwargs)
        finally:
            self._thread_local.invocation_id = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def failure_details(function_name: str, exc: BaseException) -> str:
    """The lines Core Tools prints under a failed invocation's "Executed" line.

    The WebJobs host's FunctionInvocationException (its source shown as the .NET runtime's) wraps
    the worker's RpcException, flattened into one message (Utility.FlattenException); a timeout is
    the host's own FunctionTimeoutException.
    """
    if isinstance(exc, FunctionTimeoutError):
        return f"Microsoft.Azure.WebJobs.Host: {exc}."
    return (
        f"System.Private.CoreLib: Exception while executing function: Functions.{function_name}."
        f" System.Private.CoreLib: {rpc_exception(exc)}"
    )
