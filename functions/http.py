"""The HTTP surface, declared once: each route with the responses it can give, one wrapper that maps
tasklane's errors to problem responses through one table, and the declarations the OpenAPI
document is generated from (:mod:`functions.openapi`).
"""

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any

import azure.functions as func
import msgspec

from shared.errors import (
    BackpressureError,
    BrokerError,
    IdempotencyConflictError,
    IdempotencyMismatchError,
    RateLimitedError,
    StoreError,
    TasklaneError,
    TaskNotFoundError,
    TaskStateError,
    ValidationError,
)
from shared.pipeline.delivery import TraceContext
from shared.pipeline.hooks import RequestScope
from shared.pipeline.root import hooks

_ENCODER = msgspec.json.Encoder()

#: A view gets the request and the scope it reports to (the tasks it touched).
View = Callable[[func.HttpRequest, RequestScope], Awaitable[func.HttpResponse]]


@dataclasses.dataclass(frozen=True)
class Answer:
    """One response a route can give: what the OpenAPI document says of it."""

    description: str
    schema: dict[str, Any] | None = None
    #: Headers it carries, e.g. ``Retry-After``.
    headers: tuple[str, ...] = ()
    #: What its body is sent as; ``None`` for an answer without a body.
    media_type: str | None = "application/json"


ERROR_SCHEMA = {"$ref": "#/components/schemas/Error"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """How one of our errors answers: its status, title and headers (``Retry-After``)."""

    status: int
    title: str
    retry_after: int | None = None
    #: Headers it carries besides ``Retry-After``.
    headers: tuple[str, ...] = ()

    def answer(self) -> Answer:
        retry = ("Retry-After",) if self.retry_after else ()
        return Answer(self.title, ERROR_SCHEMA, retry + self.headers)


#: Error type → problem response; the most specific type that matches wins.
PROBLEMS: dict[type[TasklaneError], Problem] = {
    ValidationError: Problem(400, "invalid submission"),
    BackpressureError: Problem(429, "the backlog is at its limit, retry later", headers=("Retry-After",)),
    RateLimitedError: Problem(
        429, "over this caller's rate limit", headers=("Retry-After", "RateLimit-Policy", "RateLimit")
    ),
    BrokerError: Problem(503, "the queue (broker) is not reachable right now", retry_after=5),
    StoreError: Problem(503, "the status store (Valkey) is not reachable right now", retry_after=5),
    IdempotencyConflictError: Problem(409, "a request with this Idempotency-Key is still in flight", 1),
    IdempotencyMismatchError: Problem(422, "this Idempotency-Key was used with another request body"),
    TaskNotFoundError: Problem(404, "no such task"),
    TaskStateError: Problem(409, "the task is not in a state that allows this"),
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        _ENCODER.encode(body), status_code=status, headers=headers, mimetype="application/json"
    )


def problem(status: int, title: str, /, **extra: Any) -> func.HttpResponse:
    headers = extra.pop("headers", None)
    return json_response({"error": title, **extra}, status, headers)


def error_response(exc: TasklaneError) -> func.HttpResponse:
    """The answer for one of our errors; never a traceback, never a secret."""
    for kind in type(exc).__mro__:
        found = PROBLEMS.get(kind)
        if found is not None:
            break
    else:
        return problem(500, "internal error")
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if found.retry_after:
        headers["Retry-After"] = str(found.retry_after)
    if isinstance(exc, ValidationError):
        extra["details"] = [e.as_dict() for e in exc.errors]
    elif isinstance(exc, RateLimitedError):
        extra |= {"limit": exc.limit, "burst": exc.burst}
        headers |= _rate_headers(exc)
    elif isinstance(exc, BackpressureError):
        extra |= {"backlog": exc.backlog, "limit": exc.limit}
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, TaskStateError):
        extra |= {"status": exc.status, "detail": str(exc)}
    elif isinstance(exc, StoreError):
        extra["dependency"] = "valkey"
    elif isinstance(exc, BrokerError):
        extra["dependency"] = "broker"
    return problem(found.status, found.title, headers=headers or None, **extra)


def _rate_headers(exc: RateLimitedError) -> dict[str, str]:
    """``Retry-After`` and the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers): the policy
    (``q`` tasks a window of ``w`` seconds, the burst refilled at the rate) and what is left now."""
    window = max(1, math.ceil(exc.burst / exc.limit))
    return {
        "Retry-After": str(max(1, math.ceil(exc.retry_after))),
        "RateLimit-Policy": f'"caller";q={exc.burst};w={window}',
        "RateLimit": f'"caller";r=0;t={max(1, math.ceil(exc.reset))}',
    }


@dataclasses.dataclass(frozen=True)
class Route:
    """A declared route: where it is, who may call it, and every response it can give."""

    name: str
    method: str
    route: str
    summary: str
    answers: dict[int, Answer]
    auth_level: func.AuthLevel = func.AuthLevel.FUNCTION
    #: OpenAPI parameters and request body, as the document states them.
    parameters: tuple[dict[str, Any], ...] = ()
    request_body: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return "/" + self.route

    def documented(self) -> dict[int, Answer]:
        """Every status the route can answer, with 401 where a key is needed."""
        found = dict(self.answers)
        if self.auth_level != func.AuthLevel.ANONYMOUS:
            found.setdefault(401, Answer("Missing or wrong function key", media_type=None))
        return dict(sorted(found.items()))


#: Every route the app's blueprints declared, in order: what the OpenAPI document lists.
DECLARED: list[Route] = []


class Routes:
    """The routes of one blueprint: ``@routes.add(Route(...))`` declares and registers each view."""

    def __init__(self, blueprint: func.Blueprint) -> None:
        self._blueprint = blueprint

    def add(self, route: Route, *, raises: tuple[type[TasklaneError], ...] = ()) -> Callable[[View], View]:
        """Register ``view`` for ``route``; each error type in ``raises`` adds its problem response."""
        answers = dict(route.answers)
        for kind in raises:
            answer = PROBLEMS[kind].answer()
            earlier = answers.get(PROBLEMS[kind].status)
            if earlier is not None:  # two errors answer alike: one answer names both, with all headers
                answer = dataclasses.replace(
                    earlier,
                    description=f"{earlier.description}; or {answer.description}",
                    headers=tuple(dict.fromkeys(earlier.headers + answer.headers)),
                )
            answers[PROBLEMS[kind].status] = answer
        route = dataclasses.replace(route, answers=answers)
        DECLARED.append(route)

        def register(view: View) -> View:
            handler = _wrap(route, view)
            self._blueprint.route(route=route.route, methods=[route.method], auth_level=route.auth_level)(
                handler
            )
            return view

        return register


def _wrap(
    route: Route, view: View
) -> Callable[[func.HttpRequest, func.Context], Awaitable[func.HttpResponse]]:
    label = f"/api{route.path}"

    async def handler(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        trace = TraceContext.of(context.trace_context.trace_parent, context.trace_context.trace_state)
        with hooks().request(label, route.method, trace) as scope:
            try:
                response = await view(req, scope)
            except TasklaneError as exc:
                response = error_response(exc)
            scope.status(response.status_code)
            return response

    # The worker names the function after the Python function and binds its parameters by name, so
    # the handler takes the view's name but keeps its own (req, context) signature: no __wrapped__.
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(handler, attribute, getattr(view, attribute))
    return handler
