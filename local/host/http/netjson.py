"""JSON values as the Functions host writes them back: Newtonsoft.Json's text and .NET's numbers.

The host re-reads a string an HTTP function returns as JSON and writes the value again with
Newtonsoft.Json (``HttpBinding.CreateResult``, ``RawScriptResult``), so a client sees .NET's
rendering, not Python's: objects indented by two spaces, ``1.0`` as ``1`` at the top level, ``true``
as ``True`` once it is a .NET ``bool``. These functions produce that text from Python values.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

#: Characters Newtonsoft escapes beyond what ``json.dumps(ensure_ascii=False)`` escapes.
_EXTRA_ESCAPES = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dotnet_double(value: float) -> str:
    """``double.ToString()`` of .NET Core 3.0 and later (invariant culture): the shortest text that
    reads back to the same value, in exponent form from 1E+15 up and below 1E-04."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)  # finite
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    scientific = exponent + len(digits) - 1  # the power of ten of the first digit
    prefix = "-" if sign else ""
    if scientific >= 15 or scientific < -4:
        mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
        return f"{prefix}{mantissa}E{'-' if scientific < 0 else '+'}{abs(scientific):02d}"
    if exponent >= 0:
        return prefix + digits + "0" * exponent
    point = len(digits) + exponent
    if point > 0:
        return f"{prefix}{digits[:point]}.{digits[point:]}"
    return f"{prefix}0.{'0' * -point}{digits}"


def dotnet_text(value: Any) -> str:
    """``object.ToString()`` of the .NET value Newtonsoft reads ``value`` into, as ``RawScriptResult``
    writes a body that is neither string nor bytes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return dotnet_double(value)
    if isinstance(value, int | str):
        return str(value)
    return newtonsoft_json(value, indented=True)  # JObject.ToString() and JArray.ToString()


def newtonsoft_json(value: Any, *, indented: bool) -> str:
    """Newtonsoft.Json's serialisation of a parsed JSON value (``Formatting.Indented`` or ``None``)."""
    return _write(value, indented, 0)


def _write(value: Any, indented: bool, depth: int) -> str:
    if isinstance(value, dict):
        items = [
            f"{_string(str(k))}:{' ' if indented else ''}{_write(v, indented, depth + 1)}"
            for k, v in value.items()
        ]
        return _container("{", "}", items, indented, depth)
    if isinstance(value, list):
        return _container("[", "]", [_write(v, indented, depth + 1) for v in value], indented, depth)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return _string(dotnet_double(value))  # FloatFormatHandling.String
        text = dotnet_double(value)
        return text if any(c in text for c in ".E") else f"{text}.0"  # JsonConvert.EnsureDecimalPlace
    return str(value)


def _container(opening: str, closing: str, items: list[str], indented: bool, depth: int) -> str:
    if not items:
        return opening + closing
    if not indented:
        return opening + ",".join(items) + closing
    inner = "  " * (depth + 1)
    return f"{opening}\n{inner}" + f",\n{inner}".join(items) + f"\n{'  ' * depth}{closing}"


def _string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    for char, escape in _EXTRA_ESCAPES.items():
        quoted = quoted.replace(char, escape)
    return quoted
