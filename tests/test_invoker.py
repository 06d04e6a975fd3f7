"""The invoker: async on the loop, sync on the pool, context, Out bindings, functionTimeout."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from local.host.errors import FunctionFailedError
from local.host.indexing import Binding, IndexedFunction
from local.host.invoker import Invoker


def _fn(func_: Callable[..., Any], *outputs: str) -> IndexedFunction:
    trigger = Binding("req", "httpTrigger", "IN", {})
    returned = Binding("$return", "http", "OUT", {})
    bindings = (trigger, returned, *(Binding(name, "http", "OUT", {}) for name in outputs))
    return IndexedFunction("f", trigger, bindings, func_, Path("."))


async def test_sync_functions_run_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()

    def sync(req: str) -> int:
        return threading.get_ident()

    result = await Invoker().invoke(_fn(sync), {"req": "x"})
    assert result.value != loop_thread


async def test_context_and_out_bindings() -> None:
    async def handler(req: str, context: func.Context, res: func.Out[str]) -> None:
        res.set(f"{req}:{context.function_name}:{context.trace_context.trace_parent}")

    result = await Invoker().invoke(
        _fn(handler, "res"), {"req": "hi"}, trace_parent="00-abc", invocation_id="i-1"
    )
    assert result.invocation_id == "i-1"
    assert result.outputs == {"res": "hi:f:00-abc"}


@pytest.mark.parametrize("is_async", [True, False])
async def test_function_timeout_fails_the_invocation(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow_async(req: str) -> None:
        await asyncio.sleep(5)

    def slow_sync(req: str) -> None:
        threading.Event().wait(0.5)

    with pytest.raises(FunctionFailedError):
        await Invoker(timeout=0.05).invoke(_fn(slow_async if is_async else slow_sync), {"req": "x"})
    assert "Timeout value of 00:00:00 was exceeded by function: Functions.f." in caplog.text


async def test_a_functions_own_timeout_error_is_reported_as_its_own() -> None:
    async def raises(req: str) -> None:
        raise TimeoutError("the upstream timed out")

    with pytest.raises(FunctionFailedError) as caught:
        await Invoker(timeout=10).invoke(_fn(raises), {"req": "x"})
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert str(caught.value.__cause__) == "the upstream timed out"
