"""The HTTP front of the host: an ASGI app that turns requests into ``httpTrigger`` invocations.

It serves ``/<routePrefix>/<route>`` for every HTTP function, checks the auth level, builds an
``azure.functions.HttpRequest``, invokes, and writes the ``$return`` (or named ``http`` output)
back. A failing function answers 500 with the invocation id; its traceback stays in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from local.host.errors import FunctionFailedError, IndexingError
from local.host.http.keys import HEADER, QUERY, KeyRing
from local.host.http.routes import Route, RouteMatch, RouteTable, RouteTemplate, RouteTemplateError
from local.host.indexing import IndexedFunction
from local.host.invoker import Invoker

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
    """ASGI application serving the app's HTTP functions."""

    def __init__(
        self,
        functions: Iterable[IndexedFunction],
        routes: RouteTable,
        keys: KeyRing,
        invoker: Invoker,
        *,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self._functions = {fn.name: fn for fn in functions}
        self._routes = routes
        self._keys = keys
        self._invoker = invoker
        self._body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        found = self._routes.find(scope["path"], scope["method"])
        if found is None:
            await _respond(send, 404, b"", [])
            return
        if isinstance(found, frozenset):
            await _respond(send, 405, b"", [(b"allow", ", ".join(sorted(found)).encode())])
            return
        await self._serve(found, scope, receive, send)

    async def _serve(self, found: RouteMatch, scope: Scope, receive: Receive, send: Send) -> None:
        fn = self._functions[found.route.target]
        headers = _headers(scope)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        level = str(fn.trigger.get("authLevel") or "function")
        if not self._keys.allows(level, fn.name, headers.get(HEADER) or query.get(QUERY)):
            await _respond(send, 401, b"", [])
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._body_limit:
            await _respond(send, 413, b"", [])
            return
        body = await _read_body(receive, self._body_limit)
        if body is None:
            await _respond(send, 413, b"", [])
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
            payload = json.dumps({"error": "Internal Server Error", "invocationId": exc.invocation_id})
            await _respond(
                send,
                500,
                payload.encode(),
                [
                    (b"content-type", b"application/json"),
                    (b"x-ms-invocation-id", exc.invocation_id.encode()),
                ],
            )
            return
        output = self._output(fn, result.value, result.outputs)
        await _send_output(send, output, result.invocation_id)

    @staticmethod
    def _output(fn: IndexedFunction, value: Any, outputs: dict[str, Any]) -> Any:
        for binding in fn.outputs():
            if binding.type == "http" and binding.name != "$return":
                return outputs.get(binding.name)
        return value


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host") or "localhost"
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    url = f"{scope.get('scheme', 'http')}://{host}{path}"
    if query and "?" not in url:
        url += f"?{query}"
    return url


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or ``None`` once it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_output(send: Send, output: Any, invocation_id: str) -> None:
    if output is None:
        await _respond(send, 204, b"", [])
    elif isinstance(output, func.HttpResponse):
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in output.headers.items()]
        if not any(name == b"content-type" for name, _ in headers):
            mimetype = output.mimetype
            content_type = (
                f"{mimetype}; charset={output.charset}" if mimetype.startswith("text/") else mimetype
            )
            headers.append((b"content-type", content_type.encode("latin-1")))
        await _respond(send, output.status_code, output.get_body() or b"", headers)
    elif isinstance(output, str):
        await _respond(send, 200, output.encode(), [(b"content-type", b"text/plain; charset=utf-8")])
    elif isinstance(output, bytes | bytearray):
        await _respond(send, 200, bytes(output), [(b"content-type", b"application/octet-stream")])
    else:
        log.error(
            "Invocation %s returned %s, which an HTTP output cannot carry (use HttpResponse, str or bytes)",
            invocation_id,
            type(output).__name__,
        )
        payload = json.dumps({"error": "Internal Server Error", "invocationId": invocation_id})
        await _respond(send, 500, payload.encode(), [(b"content-type", b"application/json")])


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
