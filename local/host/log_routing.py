"""Which log records reach the console, by the Python worker's and the Functions host's rules.

- A record the app logs reaches the host only while its invocation runs. The worker tags it with
  the invocation id of the current asyncio task (tasks inherit it) or of the thread (the pool
  thread of a sync function, or a thread that set ``context.thread_local_storage.invocation_id``),
  and the host drops a record whose invocation is not executing ("Ignoring RpcLog from invocation
  ..."; azure_functions_worker/dispatcher.py ``get_current_invocation_id``,
  azure-functions-host ``GrpcWorkerChannel.Log``). The worker's root logger is at INFO, DEBUG with
  ``PYTHON_ENABLE_DEBUG_LOGGING``; ``azure.functions*`` and ``azure_functions_worker*`` records are
  system logs and never shown (the worker's log_filtering_functions tests).
- host.json ``logging.logLevel`` then filters by category, the longest matching one winning
  (Microsoft.Extensions.Logging ``LoggerRuleSelector``): ``Function.<name>`` holds the invocation
  lines, ``Function.<name>.User`` the app's records, ``Host.Function.Console`` its stdout/stderr.
- The host's own records (``local.host``, and its libraries outside an invocation) follow only
  ``TASKLANE_LOG_LEVEL``, which has already set their loggers' levels.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.host.errors import HostError

#: The worker's stdout and stderr lines (WorkerConstants.ConsoleLogCategoryName).
CONSOLE_CATEGORY = "Host.Function.Console"
#: ``Function.<name>``, the invocation lines' category (LogCategories.CreateFunctionCategory).
FUNCTION_CATEGORY = "Function"
#: Loggers whose records the worker sends as system logs, which the console never shows.
SYSTEM_LOG_PREFIXES = ("azure_functions_worker", "azure.functions")
HOST_PACKAGE = "local.host"

#: .NET's LogLevel names and the Python level each stands for; None is above every level.
DOTNET_LEVELS: Mapping[str, int] = {
    "trace": 5,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}

log = logging.getLogger(__name__)

_invocation: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)
_executing: dict[str, str] = {}
_thread_local: Any = threading.local()


@dataclass(frozen=True)
class CategoryLevels:
    """host.json ``logging.logLevel``: the minimum level of each category, ``default`` for the rest."""

    rules: Mapping[str, int] = field(default_factory=dict)
    #: Core Tools' level for user categories when host.json names none (LoggingFilterHelper).
    default: int = logging.INFO
    _known: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_host_json(cls, document: Mapping[str, Any]) -> CategoryLevels:
        """Read ``logging.logLevel``; a value that is not a .NET log level names itself."""
        section = (document.get("logging") or {}).get("logLevel") or {}
        if not isinstance(section, Mapping):
            raise HostError("host.json: logging.logLevel must be an object of category: level")
        rules: dict[str, int] = {}
        default = logging.INFO
        for category, value in section.items():
            level = DOTNET_LEVELS.get(str(value).strip().lower())
            if level is None:
                raise HostError(
                    f"host.json logging.logLevel.{category}: '{value}' is not a log level"
                    " (Trace, Debug, Information, Warning, Error, Critical, None)"
                )
            if str(category).lower() == "default":
                default = level
            else:
                rules[str(category).lower()] = level
        return cls(rules, default)

    def minimum(self, category: str) -> int:
        """The level a record of ``category`` needs; the longest matching rule decides.

        A rule matches a category it starts (case-insensitively, ``Function`` matches
        ``Function.f.User`` and ``Functionary`` alike, as in .NET); one ``*`` stands for any text.
        Answers are kept: the filter asks for the same few categories on every record.
        """
        found = self._known.get(category)
        if found is None:
            found = self._known[category] = self._decide(category)
        return found

    def _decide(self, category: str) -> int:
        lowered = category.lower()
        found, length = self.default, -1
        for rule, level in self.rules.items():
            prefix, star, suffix = rule.partition("*")
            matches = lowered.startswith(prefix) and (
                not star or (lowered.endswith(suffix) and len(lowered) >= len(prefix) + len(suffix))
            )
            if matches and len(rule) > length:
                found, length = level, len(rule)
        return found


def enter(invocation_id: str) -> contextvars.Token[str | None]:
    """Mark the current context (and the tasks it starts) as running ``invocation_id``."""
    return _invocation.set(invocation_id)


def leave(token: contextvars.Token[str | None]) -> None:
    _invocation.reset(token)


def started(invocation_id: str, function_name: str) -> None:
    """``invocation_id`` is executing: records tagged with it reach the console."""
    _executing[invocation_id] = function_name


def ended(invocation_id: str) -> None:
    _executing.pop(invocation_id, None)


def use_thread_local(storage: Any) -> None:
    """The ``context.thread_local_storage`` whose ``invocation_id`` tags a thread's records."""
    global _thread_local
    _thread_local = storage


def current_invocation() -> str | None:
    """The invocation of the running task, else of this thread, as the worker finds it.

    On the event loop's thread only the task decides: the thread's own id is the invocation that
    started last, which would claim the host's records for whichever function that was.
    """
    found = _invocation.get()
    if found is not None or _on_event_loop():
        return found
    return getattr(_thread_local, "invocation_id", None)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def is_true_like(value: str | None) -> bool:
    """The worker's reading of a boolean app setting (utils/common.is_true_like)."""
    return value is not None and value.strip().lower() in {"1", "true", "t", "yes", "y"}


class ConsoleFilter(logging.Filter):
    """Decides, on the emitting thread, whether a record reaches the console."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = CategoryLevels()
        #: The worker's root level: INFO, DEBUG with PYTHON_ENABLE_DEBUG_LOGGING.
        self.user_floor = logging.INFO
        #: Loggers of the host's own libraries, shown as the host's when no invocation runs.
        self.host_loggers: tuple[str, ...] = ()

    def configure(self, host_loggers: Iterable[str]) -> None:
        self.host_loggers = tuple(host_loggers)

    def configure_app(self, levels: CategoryLevels, *, debug_logging: bool) -> None:
        """Apply host.json's levels and ``PYTHON_ENABLE_DEBUG_LOGGING`` once settings are loaded."""
        self.levels = levels
        self.user_floor = logging.DEBUG if debug_logging else logging.INFO

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name.startswith(f"{FUNCTION_CATEGORY}.") or name == CONSOLE_CATEGORY:
            return record.levelno >= self.levels.minimum(name)
        if _under(name, (HOST_PACKAGE,)):
            return True
        invocation = current_invocation()
        function = _executing.get(invocation) if invocation else None
        if function is not None:
            return self._user_record(record, function)
        if _under(name, self.host_loggers):
            return True
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "Ignoring RpcLog from invocation '%s' because there is no matching ScriptInvocationContext.",
                invocation or "",
            )
        return False

    def _user_record(self, record: logging.LogRecord, function: str) -> bool:
        if record.levelno < self.user_floor or record.name.startswith(SYSTEM_LOG_PREFIXES):
            return False
        return record.levelno >= self.levels.minimum(f"{FUNCTION_CATEGORY}.{function}.User")


def _under(name: str, parents: tuple[str, ...]) -> bool:
    return any(name == parent or name.startswith(f"{parent}.") for parent in parents)


#: The one filter of the host's console handler.
ROUTING = ConsoleFilter()
