"""Route templates as the Functions host reads them (ASP.NET Core route syntax).

``tasks/{id}``, ``{id:int}``, ``{id:guid}``, ``{n:min(1)}``, ``{slug:regex(^[a-z-]+$)}``, optional
``{id?}``, defaults ``{page=1}`` and a trailing catch-all ``{*path}``. Literal segments match
case-insensitively. When several templates match, the most specific wins: literals before
constrained parameters, before plain parameters, before catch-alls.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

_PARAM = re.compile(r"^\{(?P<star>\*{1,2})?(?P<name>[A-Za-z_][\w]*)(?P<rest>.*)\}$")


class RouteTemplateError(ValueError):
    """A route template that the host would reject."""


def _is_number(cast: Callable[[str], object]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            cast(value)
        except (ValueError, InvalidOperation):
            return False
        return True

    return check


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**31) <= int(v) < 2**31,
    "long": lambda v: re.fullmatch(r"-?\d+", v) is not None and -(2**63) <= int(v) < 2**63,
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _is_guid,
    "datetime": _is_datetime,
    "decimal": _is_number(Decimal),
    "double": _is_number(float),
    "float": _is_number(float),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
}


def _constraint(spec: str) -> Callable[[str], bool]:
    """A predicate for one ``:constraint`` of a parameter."""
    if spec in _SIMPLE:
        return _SIMPLE[spec]
    match = re.fullmatch(r"(\w+)\((.*)\)", spec, re.DOTALL)
    if not match:
        raise RouteTemplateError(f"unknown route constraint '{spec}'")
    kind, arg = match.group(1).lower(), match.group(2)
    if kind == "regex":
        pattern = re.compile(arg, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    numbers = [a.strip() for a in arg.split(",")]
    try:
        bounds = [int(n) for n in numbers]
    except ValueError as exc:
        raise RouteTemplateError(f"route constraint '{spec}' takes whole numbers") from exc
    checks: dict[str, Callable[[str], bool]] = {
        "minlength": lambda v: len(v) >= bounds[0],
        "maxlength": lambda v: len(v) <= bounds[0],
        "length": lambda v: bounds[0] <= len(v) <= bounds[-1],
        "min": lambda v: _SIMPLE["long"](v) and int(v) >= bounds[0],
        "max": lambda v: _SIMPLE["long"](v) and int(v) <= bounds[0],
        "range": lambda v: _SIMPLE["long"](v) and bounds[0] <= int(v) <= bounds[-1],
    }
    if kind not in checks:
        raise RouteTemplateError(f"unknown route constraint '{spec}'")
    return checks[kind]


@dataclass(frozen=True)
class Segment:
    """One ``/``-separated part of a template: a literal or a parameter."""

    literal: str | None = None
    name: str = ""
    constraints: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    @property
    def rank(self) -> int:
        """Lower is more specific (ASP.NET route precedence, per segment)."""
        if self.literal is not None:
            return 0
        if self.catch_all:
            return 3
        return 1 if self.constraints else 2

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.constraints)


def _parse_segment(text: str) -> Segment:
    if "{" not in text and "}" not in text:
        return Segment(literal=text.lower())
    match = _PARAM.match(text)
    if not match:
        raise RouteTemplateError(f"'{text}': a segment is either literal text or one {{parameter}}")
    rest = match.group("rest")
    optional = rest.endswith("?")
    rest = rest.removesuffix("?")
    default = None
    if "=" in rest:
        rest, default = rest.split("=", 1)
    specs = _split_constraints(rest)
    return Segment(
        name=match.group("name"),
        constraints=tuple(_constraint(s) for s in specs),
        optional=optional or default is not None,
        default=default,
        catch_all=bool(match.group("star")),
    )


def _split_constraints(rest: str) -> list[str]:
    """``:int:min(1)`` → ``["int", "min(1)"]``; a colon inside ``regex(...)`` stays put."""
    if not rest:
        return []
    if not rest.startswith(":"):
        raise RouteTemplateError(f"unexpected '{rest}' in a route parameter")
    specs: list[str] = []
    depth, current = 0, ""
    for char in rest[1:]:
        if char == ":" and depth == 0:
            specs.append(current)
            current = ""
            continue
        depth += (char == "(") - (char == ")")
        current += char
    specs.append(current)
    return specs


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed template; :meth:`match` returns the route parameters or ``None``."""

    text: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, text: str) -> RouteTemplate:
        clean = text.strip().strip("/")
        segments = tuple(_parse_segment(part) for part in clean.split("/")) if clean else ()
        for position, segment in enumerate(segments):
            if segment.catch_all and position != len(segments) - 1:
                raise RouteTemplateError(f"'{text}': a catch-all parameter must be the last segment")
        names = [s.name for s in segments if s.literal is None]
        if len(names) != len(set(names)):
            raise RouteTemplateError(f"'{text}': a parameter name is used twice")
        return cls(text=clean, segments=segments)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(s.rank for s in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        parts = [p for p in path.strip("/").split("/")] if path.strip("/") else []
        params: dict[str, str] = {}
        for position, segment in enumerate(self.segments):
            if segment.catch_all:
                rest = "/".join(parts[position:])
                if rest:
                    params[segment.name] = rest
                elif segment.default is not None:
                    params[segment.name] = segment.default
                return params
            if position >= len(parts):
                if not segment.optional:
                    return None
                if segment.default is not None:
                    params[segment.name] = segment.default
                continue
            value = parts[position]
            if segment.literal is not None:
                if value.lower() != segment.literal:
                    return None
            elif not value or not segment.accepts(value):
                return None
            else:
                params[segment.name] = value
        return params if len(parts) <= len(self.segments) else None


@dataclass(frozen=True)
class Route:
    """A template bound to the methods it serves (empty: every method) and a target."""

    template: RouteTemplate
    methods: frozenset[str]
    target: str


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    params: Mapping[str, str]


class RouteTable:
    """Finds the route for a path and method; tells 404 (no template) from 405 (wrong method)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = sorted(routes, key=lambda r: r.template.precedence)

    def find(self, path: str, method: str) -> RouteMatch | frozenset[str] | None:
        """The match; or the allowed methods when only the method is wrong; or ``None``."""
        allowed: set[str] = set()
        for route in self._routes:
            params = route.template.match(path)
            if params is None:
                continue
            if not route.methods or method.upper() in route.methods:
                return RouteMatch(route, params)
            allowed |= route.methods
        return frozenset(allowed) if allowed else None
