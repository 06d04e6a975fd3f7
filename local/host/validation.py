"""What the Python worker and the Functions host refuse at indexing, with their messages.

Two stages, two outcomes:

- The worker checks each function's parameters against its bindings while it answers the host's
  metadata request (``functions.Registry.add_indexed_function``). One function it refuses fails
  the whole request: "Worker failed to index functions", and no function of the app runs.
- The host then validates each function's metadata (``WorkerFunctionMetadataProvider``,
  ``FunctionDescriptorProvider.ValidateFunction``): a function that fails is "in error" and left
  out, the others run.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

import azure.functions

from local.host.errors import FunctionMetadataError

#: The worker's BindingInfo directions (protos.BindingInfo), as the library's enums compare.
_OUT, _INOUT = 1, 2
_FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)", re.IGNORECASE)
_BINDING_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$")
_GENERIC_ALIASES = (getattr(typing, "_GenericAlias"), getattr(typing, "_SpecialGenericAlias"))  # noqa: B009


class FunctionLoadError(RuntimeError):
    """The worker's error for a function it cannot load; its name is part of what the host shows."""

    def __init__(self, function_name: str, message: str) -> None:
        super().__init__(f"cannot load the {function_name} function: {message}")


def _registry() -> Any:
    """The library's converters by binding type, as the worker loads them (bindings/meta.py)."""
    return azure.functions.get_binding_registry()  # type: ignore[no-untyped-call]


def has_implicit_output(binding_type: str) -> bool:
    """Whether a binding may receive the return value without ``$return`` (bindings/meta.py).

    A type the library has no converter for is generic, and generic bindings take it (except
    ``durableClient``); a known type only if its converter says so.
    """
    converter = _registry().get(binding_type)
    if converter is None:
        return binding_type != "durableClient"
    return bool(getattr(converter, "has_implicit_output", lambda: False)())


def has_return(bindings: Sequence[Any]) -> bool:
    """Whether a function may return a value: a ``$return`` binding or one with implicit output."""
    return any(b.name == "$return" or has_implicit_output(b.type) for b in bindings)


def check_function(function: Any) -> None:
    """Raise :class:`FunctionLoadError` where the worker would refuse ``function`` (a library Function)."""
    name = function.get_function_name()
    func = function.get_user_function()
    annotations = typing.get_type_hints(func)  # as the worker does: an unresolvable one fails indexing
    signature_params = dict(inspect.signature(func).parameters)
    bound: dict[str, Any] = {}
    explicit_return = False
    return_type: str | None = None
    for binding in function.get_bindings():
        if binding.direction == _INOUT:
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        if binding.name == "$return":
            if binding.direction != _OUT:
                raise FunctionLoadError(name, '"$return" binding must have direction set to "out"')
            if not explicit_return:
                explicit_return, return_type = True, binding.type
            continue
        bound[binding.name] = binding
    if "context" in signature_params and "context" not in bound:
        signature_params.pop("context")
        context_annotation = annotations.get("context")
        if "context" in annotations and (
            not isinstance(context_annotation, type) or context_annotation.__name__ != "Context"
        ):
            raise FunctionLoadError(
                name,
                'the "context" parameter is expected to be of type azure.functions.Context, got '
                f"{context_annotation!r}",
            )
    _check_parameter_sets(name, set(signature_params), set(bound))
    for param in signature_params:
        if param in annotations:
            _check_parameter(name, param, annotations[param], bound[param])
    if explicit_return and "return" in annotations:
        assert return_type is not None
        _check_return(name, annotations["return"], return_type)


def _check_parameter_sets(name: str, params: set[str], bound: set[str]) -> None:
    if params - bound:
        raise FunctionLoadError(
            name,
            f"the following parameters are declared in Python but not in function.json: {params - bound!r}",
        )
    if bound - params:
        raise FunctionLoadError(
            name,
            f"the following parameters are declared in function.json but not in Python: {bound - params!r}",
        )


def _check_parameter(name: str, param: str, annotation: Any, binding: Any) -> None:
    origin = typing.get_origin(annotation) if _is_generic(annotation) else None
    target = origin if origin is not None else annotation
    is_param_out = isinstance(target, type) and target.__name__ == "Out"
    pytype = annotation
    if is_param_out:
        args = typing.get_args(annotation)
        if len(args) != 1:
            raise FunctionLoadError(name, f"binding {param} has invalid Out annotation {annotation!r}")
        pytype = args[0]
    if not isinstance(pytype, type) and not _is_generic(pytype):
        raise FunctionLoadError(name, f"binding {param} has invalid non-type annotation {annotation!r}")
    is_binding_out = binding.direction == _OUT
    if is_binding_out and not is_param_out:
        raise FunctionLoadError(
            name,
            f'binding {param} is declared to have the "out" direction, but its annotation in Python is not'
            " a subclass of azure.functions.Out",
        )
    if not is_binding_out and is_param_out:
        raise FunctionLoadError(
            name,
            f'binding {param} is declared to have the "in" direction in function.json, but its annotation'
            " is azure.functions.Out in Python",
        )
    generic = pytype in (str, bytes) and not has_implicit_output(binding.type)
    converter = _converter("generic" if generic else binding.type)
    check: Callable[[Any], bool] = (
        converter.check_output_type_annotation if is_param_out else converter.check_input_type_annotation
    )
    if not check(pytype):
        raise FunctionLoadError(
            name,
            f'{param!r} binding type "{binding.type}" and dataType "{binding.data_type}" in function.json'
            f" do not match the corresponding function parameter's Python type annotation"
            f' "{getattr(pytype, "__name__", pytype)}"',
        )


def _check_return(name: str, annotation: Any, binding_type: str) -> None:
    if _is_generic(annotation) and getattr(typing.get_origin(annotation), "__name__", "") == "Out":
        raise FunctionLoadError(name, "return annotation should not be azure.functions.Out")
    if not isinstance(annotation, type):
        raise FunctionLoadError(name, f"has invalid non-type return annotation {annotation!r}")
    # The worker means to treat str and bytes as generic here, but compares with `is` to a tuple.
    if not _converter(binding_type).check_output_type_annotation(annotation):
        raise FunctionLoadError(
            name,
            f'Python return annotation "{annotation.__name__}" does not match binding type "{binding_type}"',
        )


def _converter(binding_type: str) -> Any:
    found = _registry().get(binding_type)
    return found if found is not None else _GenericBinding


class _GenericBinding:
    """The worker's converter for a binding the library does not know (bindings/generic.py)."""

    @staticmethod
    def check_input_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, (str, bytes))

    @staticmethod
    def check_output_type_annotation(pytype: type) -> bool:
        return issubclass(pytype, (str, bytes, bytearray))


def _is_generic(annotation: Any) -> bool:
    """The worker's ``typing_inspect.is_generic_type``: ``typing.List[X]`` is, ``list[X]`` is not."""
    if isinstance(annotation, type):
        return issubclass(annotation, typing.Generic)
    return isinstance(annotation, _GENERIC_ALIASES) and annotation.__origin__ not in (
        typing.Union,
        tuple,
        typing.ClassVar,
        collections.abc.Callable,
    )


def check_metadata(name: str, bindings: Sequence[Any], supported: Callable[[Any], bool]) -> None:
    """Raise :class:`FunctionMetadataError` where the Functions host finds a function in error.

    ``bindings`` are the function's resolved bindings; ``supported`` says whether this host can
    run one (the real host asks its extensions).
    """
    if not _FUNCTION_NAME.match(name):
        raise FunctionMetadataError(name, f"'{name}' is not a valid function name.")
    seen: set[str] = set()
    for binding in bindings:
        if not _BINDING_NAME.match(binding.name):
            raise FunctionMetadataError(
                name,
                f"The binding name {binding.name} is invalid. Please assign a valid name to the binding.",
            )
        if binding.name.lower() in seen:
            raise FunctionMetadataError(
                name,
                f"Multiple bindings with name '{binding.name}' discovered. Binding names must be unique.",
            )
        seen.add(binding.name.lower())
    triggers = [b for b in bindings if b.direction == "IN" and b.type.lower().endswith("trigger")]
    if len(triggers) > 1:
        raise FunctionMetadataError(
            name, "Multiple trigger bindings defined. A function can only have a single trigger binding."
        )
    if not triggers:
        raise FunctionMetadataError(
            name, "No trigger binding specified. A function must have a trigger input binding."
        )
    unsupported = [b.type for b in bindings if not supported(b)]
    if unsupported:
        raise FunctionMetadataError(
            name,
            f"The binding type(s) '{', '.join(unsupported)}' are not supported by the local host"
            " (it runs httpTrigger with http outputs, rabbitMQTrigger, serviceBusTrigger and timerTrigger).",
        )
