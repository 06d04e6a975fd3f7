"""Concrete ``azure.functions`` types the host hands to functions: context and output bindings."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Generic, TypeVar

import azure.functions as func
from azure.functions import _abc

T = TypeVar("T")


class TraceContext(_abc.TraceContext):
    """W3C trace context of the invocation (``traceparent``/``tracestate``)."""

    def __init__(self, trace_parent: str, trace_state: str, attributes: dict[str, str]) -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._attributes = attributes

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return self._attributes


class RetryContext(_abc.RetryContext):
    """Retry state; the host runs no retry policies, so it is always the first try."""

    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class Context(func.Context):
    """The ``context`` parameter: invocation id, function name and directory, trace context."""

    _thread_local = threading.local()

    def __init__(self, invocation_id: str, function_name: str, directory: Path, trace: TraceContext) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._directory = str(directory)
        self._trace = trace
        self._retry = RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


class Out(func.Out[T], Generic[T]):
    """An output binding's value holder, read by the host after the function returns."""

    def __init__(self) -> None:
        self._value: T | None = None
        self._is_set = False

    def set(self, val: T) -> None:
        self._value = val
        self._is_set = True

    def get(self) -> T:
        return self._value  # type: ignore[return-value]

    @property
    def is_set(self) -> bool:
        return self._is_set
