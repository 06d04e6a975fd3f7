"""Run one invocation of a user function: arguments, event loop or thread pool, timeout, outputs.

Async functions run on the host's event loop; sync ones on a thread pool sized like the worker's
(``PYTHON_THREADPOOL_THREAD_COUNT``, default ``min(32, cpus + 4)``).
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
from typing import Any

from local.host.context import Context, Out, TraceContext
from local.host.errors import FunctionFailedError
from local.host.indexing import IndexedFunction

log = logging.getLogger(__name__)


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
        log.debug(
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
