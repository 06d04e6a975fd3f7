"""Run one invocation of a user function: arguments, event loop or thread pool, timeout, outputs.

Async functions run on the host's event loop; sync ones on a thread pool sized like the worker's
(``PYTHON_THREADPOOL_THREAD_COUNT``, default ``min(32, cpus + 4)``).

Each invocation logs the two lines the Functions host prints, under the host's own category
``Function.<name>`` (so ``TASKLANE_LOG_LEVEL=INFO,Function=WARNING`` quiets them, as host.json's
``"logLevel": {"Function": "Warning"}`` does)::

    Executing 'Functions.health' (Reason='This function was programmatically called via the host APIs.', Id=…)
    Executed 'Functions.health' (Succeeded, Id=…, Duration=4ms)
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
from typing import Any

from local.host.context import Context, Out, TraceContext
from local.host.errors import FunctionFailedError
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

    def _logger(self, fn: IndexedFunction) -> logging.Logger:
        found = self._loggers.get(fn.name)
        if found is None:
            found = self._loggers[fn.name] = logging.getLogger(f"{FUNCTION_LOGGER}.{fn.name}")
        return found

    async def invoke(
        self,
        fn: IndexedFunction,
        inputs: Mapping[str, Any],
        *,
        trace_parent: str = "",
        trace_state: str = "",
        invocation_id: str | None = None,
    ) -> InvocationResult:
        """Call ``fn`` with ``inputs`` by binding name; raise :class:`FunctionFailedError` if it raises.

        The traceback is logged with the invocation id; callers decide what the failure means
        (500, requeue, abandon) and never see the user's exception text in a response.
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
                invocation_reason(fn.trigger, datetime.now().astimezone()),
                invocation_id,
            )
        started = time.perf_counter()
        try:
            value = await self._call(fn, kwargs)
        except Exception as exc:
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                fn.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                exc_info=exc,
            )
            raise FunctionFailedError(fn.name, invocation_id) from exc
        duration = time.perf_counter() - started
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
            fn.name,
            invocation_id,
            duration * 1000,
        )
        outputs = {name: out.get() for name, out in outs.items() if out.is_set}
        return InvocationResult(invocation_id, value, outputs, duration)

    async def _call(self, fn: IndexedFunction, kwargs: dict[str, Any]) -> Any:
        if fn.is_async:
            call = fn.func(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            call = loop.run_in_executor(self._pool, functools.partial(ctx.run, fn.func, **kwargs))
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
            raise TimeoutError(
                f"Timeout value of {self._timeout:g}s (functionTimeout) was exceeded by function: {fn.name}"
            ) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
