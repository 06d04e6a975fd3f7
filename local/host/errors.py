"""Errors the host raises; each says what is wrong and where."""

from __future__ import annotations

import logging
import traceback


class HostError(Exception):
    """Base class for errors of the local host."""


class AppLoadError(HostError):
    """The app could not be indexed at all.

    With a cause, the worker failed to index it (an import error, no FunctionApp, a function it
    refuses): the host shows the cause as the worker reports it. Without one, there was nothing to
    index (no script).
    """


class IndexingError(HostError):
    """One function's bindings cannot be used (an unknown setting, an unreachable queue...).

    The WebJobs host logs "Error indexing method 'Functions.<name>'" with the reason, then that the
    function "failed indexing and will be disabled"; the other functions run.
    """

    def __init__(self, function_name: str, reason: str) -> None:
        super().__init__(f"Error indexing function '{function_name}': {reason}")
        self.function_name = function_name
        self.reason = reason

    def report(self, log: logging.Logger) -> None:
        """Log it as the WebJobs host does (FunctionIndexingException.TryRecover)."""
        reason = self.reason if self.reason.endswith(".") else f"{self.reason}."
        log.error("Error indexing method 'Functions.%s'\n%s", self.function_name, reason)
        log.warning("Function 'Functions.%s' failed indexing and will be disabled.", self.function_name)


class FunctionMetadataError(IndexingError):
    """The function's metadata fails the Functions host's validation (its name, its bindings).

    The function is left out of the host; the others run.
    """

    def report(self, log: logging.Logger) -> None:
        """Log it as the Functions host does (ScriptHost.LogHostFunctionErrors)."""
        log.error("The '%s' function is in error: %s", self.function_name, self.reason)


class SettingNotFoundError(HostError):
    """A ``%Setting%`` binding expression or connection names a setting that is not set."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"'%{name}%' does not resolve to a value: set '{name}' in the environment or local settings"
        )
        self.name = name


class FunctionFailedError(HostError):
    """The user's function raised; the failure went to the log under this invocation id."""

    def __init__(self, function_name: str, invocation_id: str) -> None:
        super().__init__(f"Executed 'Functions.{function_name}' (Failed, Id={invocation_id})")
        self.function_name = function_name
        self.invocation_id = invocation_id


class FunctionTimeoutError(HostError):
    """An invocation ran past ``functionTimeout``; the message is the WebJobs host's."""

    def __init__(self, function_name: str, seconds: float) -> None:
        whole = int(seconds)
        timespan = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
        super().__init__(f"Timeout value of {timespan} was exceeded by function: Functions.{function_name}")
        self.function_name = function_name


class ListenerUnavailableError(HostError):
    """A trigger's server cannot be reached yet; the host keeps serving and retries the listener.

    Anything else a listener raises at start (a wrong setting, refused credentials) is a
    configuration no retry can fix, and stops the host.
    """


def rpc_exception(exc: BaseException) -> str:
    """``exc`` as the Functions host shows an exception the Python worker reported.

    The worker sends ``<Type>: <message>`` and the formatted stack (``Dispatcher._serialize_exception``,
    ``utils/tracing.marshall_exception_trace``, without importlib's frames for a missing module); the
    host wraps them in an ``RpcException`` whose message is ``Result: Failure``, ``Exception: ...``
    and ``Stack: ...`` on three lines, and Core Tools ends the flattened text with a period
    (``Utility.FlattenException``).
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, ModuleNotFoundError):
        frames = traceback.StackSummary.from_list(
            [frame for frame in frames if not frame.filename.startswith("<frozen importlib._bootstrap")]
        )
    text = f"Result: Failure\nException: {type(exc).__name__}: {exc}\nStack: {''.join(frames.format())}"
    return text if text.endswith(".") else f"{text}."
