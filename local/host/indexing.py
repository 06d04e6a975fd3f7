"""Import the app's script and index its FunctionApp as the Python worker and the host do.

The worker imports the script (``PYTHON_SCRIPT_FILE_NAME``, default ``function_app.py``) by module
name from the app directory, requires exactly one ``FunctionRegister`` at module level, calls
``get_functions()`` on it once and checks every function (:mod:`local.host.validation`); the host
then validates each function's metadata and resolves ``%Setting%`` expressions in its bindings.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.host.errors import AppLoadError, HostError, IndexingError
from local.host.settings import resolve_binding
from local.host.validation import check_function, check_metadata, has_return

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = "function_app.py"
SCRIPT_SETTING = "PYTHON_SCRIPT_FILE_NAME"
#: The triggers this host runs (HTTP in its front, the others as listeners).
SUPPORTED_TRIGGERS = frozenset({"httpTrigger", "rabbitMQTrigger", "serviceBusTrigger", "timerTrigger"})


@dataclass(frozen=True)
class Binding:
    """One binding of a function, its ``%Setting%`` expressions resolved."""

    name: str
    type: str
    direction: str
    values: Mapping[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


@dataclass(frozen=True)
class IndexedFunction:
    """A function ready to run: its trigger, its other bindings and the user's callable."""

    name: str
    trigger: Binding
    bindings: tuple[Binding, ...]
    func: Callable[..., Any]
    directory: Path

    # Read on every invocation: computed once (cached_property writes past the frozen dataclass).
    @functools.cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @functools.cached_property
    def parameters(self) -> Mapping[str, inspect.Parameter]:
        return inspect.signature(self.func).parameters

    def annotation(self, param: str) -> Any:
        """The resolved type annotation of ``param`` (``inspect.Parameter.empty`` when none)."""
        try:
            hints = typing.get_type_hints(self.func)
        except Exception:  # unresolvable forward references: fall back to the raw annotation
            return self.parameters[param].annotation if param in self.parameters else inspect.Parameter.empty
        return hints.get(param, inspect.Parameter.empty)

    @functools.cached_property
    def has_return(self) -> bool:
        """Whether it may return a value: the worker fails an invocation that returns one otherwise."""
        return has_return(self.bindings)

    def outputs(self) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.direction == "OUT")


class InvalidFileNameError(Exception):
    """The worker's error for a ``PYTHON_SCRIPT_FILE_NAME`` it will not load (utils/common.py)."""

    def __init__(self, file_name: str) -> None:
        super().__init__(f"Invalid file name: {file_name}")


#: What the worker accepts as the script's name: a plain ``.py`` file in the app folder.
_SCRIPT_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_\-]*\.py$")
_MODULE_NOT_FOUND_HELP = (
    "Cannot find module. Please check the requirements.txt file for the missing module. For more info,"
    " please refer the troubleshooting guide: https://aka.ms/functions-modulenotfound. Current sys.path: {}"
)


def load_app(app_dir: Path, environ: Mapping[str, str]) -> list[Any]:
    """Import the script and return ``get_functions()`` of its one FunctionApp, each function checked.

    Whatever the worker would fail its metadata request with (an import error, no app or two, a
    function it refuses) is raised as :class:`AppLoadError` caused by the worker's own exception;
    a missing script is one without a cause (the worker then reports no function at all).
    """
    name = environ.get(SCRIPT_SETTING, DEFAULT_SCRIPT)
    script = app_dir / name
    if not _SCRIPT_NAME.match(name):
        raise AppLoadError(f"{SCRIPT_SETTING}='{name}' is not a .py file name") from InvalidFileNameError(
            name
        )
    if not script.is_file():
        raise AppLoadError(f"{script} not found: the app directory must hold the script ({SCRIPT_SETTING})")
    try:
        functions = list(_index_function_app(app_dir, script).get_functions())
        for function in functions:
            check_function(function)
    except BaseException as exc:  # the worker reports anything its import raised, SystemExit too
        raise AppLoadError(f"{script.name}: {type(exc).__name__}: {exc}") from exc
    return functions


def _index_function_app(app_dir: Path, script: Path) -> Any:
    """Import ``script`` as the worker does and find its one FunctionApp (loader.index_function_app)."""
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    module_name = script.stem
    loaded = sys.modules.get(module_name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != script.resolve():
        # A module of that name imported from elsewhere (another app in this process) is not the script.
        del sys.modules[module_name]
        with contextlib.suppress(ValueError):
            sys.path.remove(str(app_dir))
        sys.path.insert(0, str(app_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extended = f"{str(exc).rstrip('.')}. {_MODULE_NOT_FOUND_HELP.format(sys.path)}".rstrip()
        raise type(exc)(extended).with_traceback(exc.__traceback__) from None

    from azure.functions import FunctionRegister

    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if len(apps) > 1:
        raise ValueError(
            f"More than one {type(apps[0]).__name__} or other top level function app instances are defined."
        )
    if not apps:
        raise ValueError(f"Could not find top level function app instances in {script.name}.")
    return apps[0]


def index(
    functions: list[Any], app_dir: Path, environ: Mapping[str, str]
) -> tuple[list[IndexedFunction], list[IndexingError]]:
    """Validate and resolve each function's bindings; a function that cannot be used is reported, not run."""
    indexed: list[IndexedFunction] = []
    errors: list[IndexingError] = []
    for function in functions:
        name = function.get_function_name()
        try:
            indexed.append(_index_one(function, name, app_dir, environ))
        except HostError as exc:
            errors.append(exc if isinstance(exc, IndexingError) else IndexingError(name, str(exc)))
    return indexed, errors


def runs_binding(binding: Any) -> bool:
    """Whether this host can run a binding: a trigger it listens to, or an HTTP output."""
    if str(binding.direction).upper() == "IN":
        return bool(binding.type in SUPPORTED_TRIGGERS)
    return bool(binding.type == "http")


def _index_one(function: Any, name: str, app_dir: Path, environ: Mapping[str, str]) -> IndexedFunction:
    # The JSON form is what the host reads: enums as their names ("IN", "MANY", "FUNCTION").
    raw = json.loads(function.get_function_json())["bindings"]
    unresolved = [Binding(str(b["name"]), str(b["type"]), str(b["direction"]).upper(), b) for b in raw]
    check_metadata(name, unresolved, runs_binding)
    bindings = tuple(
        Binding(name=b.name, type=b.type, direction=b.direction, values=resolve_binding(b.values, environ))
        for b in unresolved
    )
    trigger = next(b for b in bindings if b.direction == "IN" and b.type.lower().endswith("trigger"))
    return IndexedFunction(
        name=name, trigger=trigger, bindings=bindings, func=function.get_user_function(), directory=app_dir
    )
