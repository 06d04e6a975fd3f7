"""Import the app's script and index its FunctionApp as the Python worker does.

The worker imports the script by module name from the app directory, requires exactly one
``FunctionRegister`` at module level and calls ``get_functions()`` on it once; we do the same and
then resolve ``%Setting%`` expressions in each binding as the host does at indexing time.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.host.errors import AppLoadError, HostError, IndexingError
from local.host.settings import resolve_binding

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = "function_app.py"
SCRIPT_SETTING = "PYTHON_SCRIPT_FILE_NAME"


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

    def outputs(self) -> tuple[Binding, ...]:
        return tuple(b for b in self.bindings if b.direction == "OUT")


def script_path(app_dir: Path, environ: Mapping[str, str]) -> Path:
    return app_dir / environ.get(SCRIPT_SETTING, DEFAULT_SCRIPT)


def load_app(app_dir: Path, environ: Mapping[str, str]) -> list[Any]:
    """Import the script and return ``get_functions()`` of its one FunctionApp.

    An import error is re-raised as :class:`AppLoadError` chained to the original, so the caller
    can print the user's traceback.
    """
    script = script_path(app_dir, environ)
    if not script.is_file():
        raise AppLoadError(f"{script} not found: the app directory must hold the script ({SCRIPT_SETTING})")
    if script.suffix != ".py":
        raise AppLoadError(f"{script}: the script must be a .py file")
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
    except BaseException as exc:
        raise AppLoadError(f"{script.name} failed to import: {type(exc).__name__}: {exc}") from exc

    from azure.functions import FunctionRegister

    apps = [value for value in vars(module).values() if isinstance(value, FunctionRegister)]
    if not apps:
        raise AppLoadError(f"Could not find top level function app instances in {script.name}.")
    if len(apps) > 1:
        raise AppLoadError(
            f"More than one {type(apps[0]).__name__} or other top level function app instances are defined."
        )
    try:
        return list(apps[0].get_functions())
    except Exception as exc:
        raise AppLoadError(f"{script.name}: indexing failed: {type(exc).__name__}: {exc}") from exc


def index(
    functions: list[Any], app_dir: Path, environ: Mapping[str, str]
) -> tuple[list[IndexedFunction], list[IndexingError]]:
    """Resolve each function's bindings; a function that cannot be used is reported, not run."""
    indexed: list[IndexedFunction] = []
    errors: list[IndexingError] = []
    for function in functions:
        name = function.get_function_name()
        try:
            indexed.append(_index_one(function, name, app_dir, environ))
        except HostError as exc:
            errors.append(exc if isinstance(exc, IndexingError) else IndexingError(name, str(exc)))
    return indexed, errors


def _index_one(function: Any, name: str, app_dir: Path, environ: Mapping[str, str]) -> IndexedFunction:
    # The JSON form is what the host reads: enums as their names ("IN", "MANY", "FUNCTION").
    raw = json.loads(function.get_function_json())["bindings"]
    bindings = tuple(
        Binding(
            name=str(b["name"]),
            type=str(b["type"]),
            direction=str(b["direction"]).upper(),
            values=resolve_binding(b, environ),
        )
        for b in raw
    )
    triggers = [b for b in bindings if b.type.endswith("Trigger")]
    if len(triggers) != 1:
        raise IndexingError(name, f"expected exactly one trigger, found {len(triggers)}")
    func = function.get_user_function()
    _check_parameters(name, func, bindings)
    return IndexedFunction(name=name, trigger=triggers[0], bindings=bindings, func=func, directory=app_dir)


def _check_parameters(name: str, func: Callable[..., Any], bindings: tuple[Binding, ...]) -> None:
    """Every parameter must be a binding or ``context``, as the worker requires."""
    known = {b.name for b in bindings} | {"context"}
    for param in inspect.signature(func).parameters:
        if param not in known:
            raise IndexingError(name, f"the parameter '{param}' is not a binding of the function")
