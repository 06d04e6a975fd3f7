"""The ``context`` argument and ``Out`` holders, shaped as the Python worker's own.

The worker's ``Context``, ``TraceContext`` and ``RetryContext`` (azure_functions_worker/bindings/
context.py, tracecontext.py, retrycontext.py) are plain classes, not the library's abstract
``func.Context``: ``isinstance(context, func.Context)`` is false in Azure, and so it is here.

- ``trace_context``: ``trace_parent``, ``trace_state``, ``attributes`` and their older spellings
  ``Traceparent``, ``Tracestate``, ``Attributes``.
- ``retry_context``: ``retry_count``, ``max_retry_count`` and ``rpc_exception`` (no ``exception``).
  The host sends none without a retry policy; the worker then reads protobuf defaults: zeros and an
  exception whose fields are empty.
- ``thread_local_storage``: one ``threading.local`` for every invocation (:data:`INVOCATION_LOCAL`):
  the worker sets its ``invocation_id`` on the event loop's thread before each call, and on a pool
  thread for the length of a sync function's call (dispatcher.py ``_run_sync_func``).
- ``function_directory``: the app's folder (the v2 model has no folder per function).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

#: The worker's ``_invocation_id_local``: its ``invocation_id`` names the invocation a thread runs.
INVOCATION_LOCAL = threading.local()


class TraceContext:
    """W3C trace context of the invocation."""

    def __init__(self, trace_parent: str, trace_state: str, attributes: dict[str, str]) -> None:
        self.__trace_parent = trace_parent
        self.__trace_state = trace_state
        self.__attributes = attributes

    @property
    def Tracestate(self) -> str:
        """Trace state (deprecated name)."""
        return self.__trace_state

    @property
    def Traceparent(self) -> str:
        """Trace parent (deprecated name)."""
        return self.__trace_parent

    @property
    def Attributes(self) -> dict[str, str]:
        """Trace attributes (deprecated name)."""
        return self.__attributes

    @property
    def trace_state(self) -> str:
        return self.__trace_state

    @property
    def trace_parent(self) -> str:
        return self.__trace_parent

    @property
    def attributes(self) -> dict[str, str]:
        return self.__attributes


@dataclass
class RpcException:
    """The exception that led to a retry, as the host sends it (protobuf ``RpcException``)."""

    source: str = ""
    stack_trace: str = ""
    message: str = ""
    is_user_exception: bool = False
    type: str = ""


@dataclass
class RetryContext:
    """Retry state of the invocation; the host runs no retry policy, so it is the first try."""

    retry_count: int = 0
    max_retry_count: int = 0
    rpc_exception: RpcException = field(default_factory=RpcException)


class Context:
    """The ``context`` parameter: invocation id, function name and directory, trace and retry."""

    def __init__(
        self,
        invocation_id: str,
        function_name: str,
        directory: Path | str,
        trace: TraceContext,
        retry: RetryContext | None = None,
    ) -> None:
        self.__invocation_id = invocation_id
        self.__function_name = function_name
        self.__directory = str(directory)
        self.__trace = trace
        self.__retry = retry or RetryContext()

    @property
    def invocation_id(self) -> str:
        return self.__invocation_id

    @property
    def thread_local_storage(self) -> threading.local:
        return INVOCATION_LOCAL

    @property
    def function_name(self) -> str:
        return self.__function_name

    @property
    def function_directory(self) -> str:
        return self.__directory

    @property
    def trace_context(self) -> TraceContext:
        return self.__trace

    @property
    def retry_context(self) -> RetryContext:
        return self.__retry


class Out(Generic[T]):
    """An output binding's value holder, read by the host after the function returns.

    The worker's ``Out`` is a plain class too; a value left at ``None`` sends nothing.
    """

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
