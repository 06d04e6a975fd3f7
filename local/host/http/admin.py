"""``POST /admin/functions/{name}``: run a non-HTTP function now, as the Functions host's admin API does.

Mirrors ``FunctionsController.Invoke`` (azure-functions-host,
src/WebJobs.Script.WebHost/Controllers/FunctionsController.cs), in the order ASP.NET Core checks:

1. The ``AdminAuthLevel`` policy: the master key in ``x-functions-key`` (else ``?code=``). No key
   or an unknown one answers 401; a host key is known but not enough: 403.
2. ``[FromBody] FunctionInvocation``: a JSON content type, or 415; an empty or unreadable body, or
   one that is not an object, 400. Its ``input`` (any case) is a string; numbers and booleans are
   read as their text.
3. The function by name, ignoring case, among those indexed; none is 404.
4. 202 at once; the function runs in the background with ``input`` as its trigger value: a timer
   fires now (not past due), a queue function gets it as its message body. An HTTP function cannot
   take a string for its request: the host still answers 202 and the run fails, which is logged.

Other methods on this path (the host's function metadata, create, delete) are not offered: 405.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from azure.functions.servicebus import ServiceBusMessage
from azure.functions.timer import TimerRequest

from local.host.errors import FunctionFailedError
from local.host.http.asgi import Receive, Scope, Send, query_params, read_body, request_headers, respond
from local.host.http.keys import HEADER, QUERY, KeyRing
from local.host.http.netjson import dotnet_text
from local.host.indexing import IndexedFunction
from local.host.ncrontab import ScheduleError, parse_schedule

log = logging.getLogger(__name__)

PREFIX = "/admin/"
FUNCTIONS_PREFIX = "/admin/functions/"
#: ``[FromBody]``'s JSON input formatter: these media types, and any ``application/*+json``.
JSON_TYPES = frozenset({"application/json", "text/json"})

#: Runs a function with its inputs by binding name (the host's invoker, for a run by hand).
RunByHand = Callable[[IndexedFunction, Mapping[str, Any]], Awaitable[object]]


class AdminApi:
    """The admin routes of the host, served ahead of the HTTP functions' routes."""

    def __init__(
        self,
        http_functions: Iterable[IndexedFunction],
        other_functions: Iterable[IndexedFunction],
        keys: KeyRing,
        run_by_hand: RunByHand,
        *,
        body_limit: int,
    ) -> None:
        self._http = {fn.name.lower(): fn for fn in http_functions}
        self._others = {fn.name.lower(): fn for fn in other_functions}
        self._keys = keys
        self._run_by_hand = run_by_hand
        self._body_limit = body_limit
        self._running: set[asyncio.Task[None]] = set()
        self._warned_no_master = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        name = path[len(FUNCTIONS_PREFIX) :] if path.startswith(FUNCTIONS_PREFIX) else ""
        if not name or "/" in name:
            await respond(send, 404, b"", [])
            return
        if scope["method"] != "POST":
            await respond(send, 405, b"", [(b"allow", b"POST")])
            return
        status = await self._invoke(name, scope, receive)
        await respond(send, status, b"", [])

    async def _invoke(self, name: str, scope: Scope, receive: Receive) -> int:
        headers = request_headers(scope)
        presented = headers[HEADER] if HEADER in headers else query_params(scope).get(QUERY)
        level = self._keys.level(presented)
        if level != "admin":
            self._warn_without_master_key()
            return 401 if level is None else 403
        if not _is_json(headers.get("content-type", "")):
            return 415
        body = await read_body(receive, self._body_limit)
        if body is None:
            return 413
        try:
            document = json.loads(body)
        except ValueError:
            return 400
        if not isinstance(document, dict):
            return 400
        raw_input = next((value for key, value in document.items() if key.lower() == "input"), None)
        if isinstance(raw_input, dict | list):
            return 400
        text = None if raw_input is None else dotnet_text(raw_input)
        key = name.lower()
        if key in self._http:
            fn = self._http[key]
            log.error(
                "Function 'Functions.%s' was not run: Exception binding parameter '%s'. An HttpRequest is "
                "required (call an HTTP function at its route)",
                fn.name,
                fn.trigger.name,
            )
            return 202
        found = self._others.get(key)
        if found is None:
            return 404
        task = asyncio.create_task(self._run(found, text), name=f"run {found.name} by hand")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return 202

    async def _run(self, fn: IndexedFunction, text: str | None) -> None:
        try:
            await self._run_by_hand(fn, {fn.trigger.name: trigger_value(fn, text)})
        except FunctionFailedError:
            pass  # the invoker logged it
        except Exception:
            log.exception("Running 'Functions.%s' by hand failed in the host", fn.name)

    async def drain(self) -> None:
        """Wait for the runs started by hand (at shutdown, before the invoker closes)."""
        await asyncio.gather(*self._running, return_exceptions=True)

    def _warn_without_master_key(self) -> None:
        if not self._keys.master and not self._warned_no_master:
            self._warned_no_master = True
            log.warning("The admin API needs the master key, and none is set: set FUNCTIONS_MASTER_KEY")


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in JSON_TYPES or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def trigger_value(fn: IndexedFunction, text: str | None) -> Any:
    """What a function's trigger parameter receives when the host is asked to run it with ``text``."""
    kind = fn.trigger.type
    if kind == "timerTrigger":
        try:
            adjust_for_dst = parse_schedule(str(fn.trigger.get("schedule") or "")).adjust_for_dst
        except ScheduleError:
            adjust_for_dst = True
        # The extension builds a fresh TimerInfo: not past due (the monitor's status is not read here).
        return TimerRequest(past_due=False, schedule={"AdjustForDST": adjust_for_dst})
    body = (text or "").encode("utf-8")
    if kind == "serviceBusTrigger":
        return _service_bus_value(fn, text or "", body)
    return body if _wants_bytes(fn) else text or ""


def _wants_bytes(fn: IndexedFunction) -> bool:
    """``dataType`` binary/stream, or a ``bytes`` annotation without one, as the queue listeners decide."""
    data_type = str(fn.trigger.get("dataType") or "").lower()
    if data_type in ("binary", "stream"):
        return True
    if data_type == "string":
        return False
    return fn.annotation(fn.trigger.name) is bytes


def _service_bus_value(fn: IndexedFunction, text: str, body: bytes) -> Any:
    from local.host.triggers.servicebus_convert import InputShape, input_shape

    many = str(fn.trigger.get("cardinality") or "one").lower() == "many"
    shape = input_shape(fn, many)
    if shape is InputShape.BYTES:
        return body
    if shape is InputShape.STR:
        return text
    message = ServiceBusMessage(
        body=body, message_id=uuid.uuid4().hex, application_properties={}, user_properties={}
    )
    return [message] if many else message
