"""An HTTP function's output, encoded as the Python worker encodes it before it answers the host.

The worker hands ``$return`` and each ``Out`` of an ``http`` binding to the library's
``HttpResponseConverter.encode`` (azure_functions_worker/bindings/meta.py ``get_datum``): a ``str``
becomes a string, an ``HttpResponse`` an ``RpcHttp`` (status, headers, cookies, body bytes), and
anything else, ``None`` and ``bytes`` included, fails the invocation with the worker's
``TypeError``; an ``Out`` left at ``None`` sends nothing. (A value returned without a ``$return``
binding fails too, whatever the trigger: the invoker checks that, as dispatcher.py does.)

This happens inside the invocation, so such a function is logged as failed, not succeeded:
:func:`with_http_output` wraps the user's function so the host's invoker runs both together.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from azure.functions.http import HttpResponseConverter

from local.host.http.cookies import RpcCookie, rpc_cookies
from local.host.indexing import IndexedFunction

RETURN = "$return"


@dataclass(frozen=True)
class RpcHttp:
    """The worker's ``RpcHttp`` for an ``HttpResponse``: what the host writes the response from."""

    status_code: str
    #: In the response's order; a name repeated with the same spelling keeps its last value.
    headers: Mapping[str, str]
    cookies: tuple[RpcCookie, ...]
    body: bytes


#: What an ``http`` output carries to the host: a string, or a whole response.
HttpOutput = str | RpcHttp


def encode_http(value: Any) -> HttpOutput:
    """``value`` as the worker sends it for an ``http`` binding; raises as the worker raises."""
    try:
        datum = HttpResponseConverter.encode(value, expected_type=None)
    except NotImplementedError:
        raise TypeError(
            f'unable to encode outgoing TypedData: unsupported type "{HttpResponseConverter}" '
            f'for Python type "{type(value).__name__}"'
        ) from None
    if datum.type == "string":
        return str(datum.value)
    fields = datum.value
    return RpcHttp(
        status_code=str(fields["status_code"].value),
        headers={name: str(header.value) for name, header in fields["headers"].items()},
        cookies=rpc_cookies(fields.get("cookies")),
        body=bytes(fields["body"].value),
    )


def with_http_output(fn: IndexedFunction) -> IndexedFunction:
    """``fn`` with its ``http`` outputs encoded inside the call, as part of the invocation."""
    outputs = fn.outputs()
    returns_http = any(b.name == RETURN and b.type == "http" for b in outputs)
    named_http = tuple(b.name for b in outputs if b.type == "http" and b.name != RETURN)
    original = fn.func

    def finish(value: Any, arguments: Mapping[str, Any]) -> Any:
        for name in named_http:
            out = arguments.get(name)
            if out is not None and out.get() is not None:
                out.set(encode_http(out.get()))
        return encode_http(value) if returns_http else value

    return replace(fn, func=_call_then(original, finish, asynchronous=fn.is_async))


def _call_then(
    original: Callable[..., Any], finish: Callable[[Any, Mapping[str, Any]], Any], *, asynchronous: bool
) -> Callable[..., Any]:
    """``original`` followed by ``finish`` on its result, keeping its signature (and being async if it is)."""
    if asynchronous:

        @functools.wraps(original)
        async def call_async(**arguments: Any) -> Any:
            return finish(await original(**arguments), arguments)

        return call_async

    @functools.wraps(original)
    def call(**arguments: Any) -> Any:
        return finish(original(**arguments), arguments)

    return call
