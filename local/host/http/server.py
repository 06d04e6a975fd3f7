"""The HTTP front of the host: an ASGI app that turns requests into ``httpTrigger`` invocations.

It serves ``/<routePrefix>/<route>`` for every HTTP function, checks the auth level, builds an
``azure.functions.HttpRequest``, invokes, and writes the ``$return`` (or named ``http``) output back
as the worker encodes it (:mod:`~local.host.http.encoding`) and the host writes it
(:mod:`~local.host.http.results`). A failing function answers 500 with the invocation id; its
traceback stays in the log. ``/admin/`` is the host's admin API (:mod:`~local.host.http.admin`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import azure.functions as func

from local.host.errors import FunctionFailedError, IndexingError
from local.host.http.admin import PREFIX as ADMIN_PREFIX
from local.host.http.admin import AdminApi, RunByHand
from local.host.http.asgi import Receive, Scope, Send, query_params, read_body, request_headers, respond
from local.host.http.encoding import RETURN, HttpOutput, with_http_output
from local.host.http.keys import HEADER, QUERY, KeyRing
from local.host.http.results import HostResponseError, http_result
from local.host.http.routes import Route, RouteMatch, RouteTable, RouteTemplate, RouteTemplateError
from local.host.indexing import IndexedFunction
from local.host.invoker import Invoker

log = logging.getLogger(__name__)

#: Routes the Functions host refuses to a function: its own ``admin/...`` and ``runtime/...`` APIs.
RESERVED_ROUTES = ("admin", "runtime")
#: The Functions host's default request body limit (``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``).
DEFAULT_BODY_LIMIT = 104_857_600


def http_routes(
    functions: Iterable[IndexedFunction], route_prefix: str
) -> tuple[RouteTable, list[IndexingError]]:
    """The route table of the HTTP functions; a bad template is that function's indexing error."""
    routes: list[Route] = []
    errors: list[IndexingError] = []
    for fn in functions:
        template_text = fn.trigger.get("route") or fn.name
        # The host keeps these for itself, whatever the prefix (ScriptHost.ValidateHttpFunction).
        if str(template_text).strip("/").lower().startswith(RESERVED_ROUTES):
            errors.append(
                IndexingError(fn.name, "The specified route conflicts with one or more built in routes.")
            )
            continue
        try:
            template = RouteTemplate.parse(_join(route_prefix, template_text))
        except RouteTemplateError as exc:
            errors.append(IndexingError(fn.name, str(exc)))
            continue
        methods = frozenset(str(m).upper() for m in fn.trigger.get("methods") or ())
        routes.append(Route(template, methods, fn.name))
    return RouteTable(routes), errors


def _join(prefix: str, route: str) -> str:
    return f"{prefix}/{route.strip('/')}" if prefix else route.strip("/")


class HttpFront:
    """ASGI application serving the app's HTTP functions and the admin API.

    ``other_functions`` are the non-HTTP functions the admin API can run by hand, through
    ``run_by_hand`` (the invoker's ``invoke`` unless given).
    """

    def __init__(
        self,
        functions: Iterable[IndexedFunction],
        routes: RouteTable,
        keys: KeyRing,
        invoker: Invoker,
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
        other_functions: Iterable[IndexedFunction] = (),
        run_by_hand: RunByHand | None = None,
    ) -> None:
        http_functions = list(functions)
        self._functions = {fn.name: with_http_output(fn) for fn in http_functions}
        self._routes = routes
        self._keys = keys
        self._invoker = invoker
        self._body_limit = body_limit
        self._admin = AdminApi(
            http_functions, other_functions, keys, run_by_hand or invoker.invoke, body_limit=body_limit
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith(ADMIN_PREFIX):
            await self._admin(scope, receive, send)
            return
        found = self._routes.find(scope["path"], scope["method"])
        if found is None:
            await respond(send, 404, b"", [])
            return
        if isinstance(found, frozenset):
            await respond(send, 405, b"", [(b"allow", ", ".join(sorted(found)).encode())])
            return
        await self._serve(found, scope, receive, send)

    async def drain(self) -> None:
        """Wait for functions the admin API started (at shutdown, before the invoker closes)."""
        await self._admin.drain()

    async def _serve(self, found: RouteMatch, scope: Scope, receive: Receive, send: Send) -> None:
        fn = self._functions[found.route.target]
        headers = request_headers(scope)
        query = query_params(scope)
        level = str(fn.trigger.get("authLevel") or "function")
        if not self._keys.allows(level, fn.name, headers.get(HEADER) or query.get(QUERY)):
            await respond(send, 401, b"", [])
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._body_limit:
            await respond(send, 413, b"", [])
            return
        body = await read_body(receive, self._body_limit)
        if body is None:
            await respond(send, 413, b"", [])
            return
        request = func.HttpRequest(
            method=scope["method"],
            url=_url(scope, headers),
            headers=headers,
            params=query,
            route_params=dict(found.params),
            body=body,
        )
        try:
            result = await self._invoker.invoke(
                fn,
                {fn.trigger.name: request},
                trace_parent=headers.get("traceparent", ""),
                trace_state=headers.get("tracestate", ""),
            )
        except FunctionFailedError as exc:
            await _failed(send, exc.invocation_id)
            return
        await _send_output(send, _http_output(fn, result.value, result.outputs), result.invocation_id)


def _http_output(fn: IndexedFunction, value: Any, outputs: dict[str, Any]) -> HttpOutput | None:
    """The encoded ``http`` output: ``$return``, else the named one (``None`` when never set)."""
    for binding in fn.outputs():
        if binding.type == "http":
            return value if binding.name == RETURN else outputs.get(binding.name)
    return None


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host") or "localhost"
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    url = f"{scope.get('scheme', 'http')}://{host}{path}"
    if query and "?" not in url:
        url += f"?{query}"
    return url


async def _send_output(send: Send, output: HttpOutput | None, invocation_id: str) -> None:
    """Write the response the host writes for ``output``; no output at all is 204, as the host's
    ``ObjectResult(null)``."""
    if output is None:
        await respond(send, 204, b"", [])
        return
    try:
        result = http_result(output)
    except HostResponseError:
        # The invocation succeeded; writing its response did not (the host's ExceptionMiddleware).
        log.exception("An unhandled host error has occurred. (Id=%s)", invocation_id)
        await _failed(send, invocation_id)
        return
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in result.headers]
    await respond(send, result.status, result.body, headers)


async def _failed(send: Send, invocation_id: str) -> None:
    """500, with the invocation id so the log lines of the failure can be found."""
    payload = json.dumps({"error": "Internal Server Error", "invocationId": invocation_id})
    headers = [(b"content-type", b"application/json"), (b"x-ms-invocation-id", invocation_id.encode())]
    await respond(send, 500, payload.encode(), headers)
