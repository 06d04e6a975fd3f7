"""The HTTP response the Functions host writes for what the worker returned.

Mirrors ``HttpBinding.CreateResult`` and ``RawScriptResult`` (azure-functions-host,
src/WebJobs.Script/Binding/Http/):

- A **string** is first read as JSON with Newtonsoft.Json. Text that is not JSON is the body as it
  is; a JSON value is written back in .NET's form (an object or array indented, a number or ``true``
  as .NET prints it, ``null`` as nothing). A JSON object with a ``body`` property is a *response
  object*: ``statusCode``/``status``, ``headers`` and ``body`` make the response. Strings are sent
  as ``text/plain; charset=utf-8``, or the given content type with ``charset=utf-8``.
- An **HttpResponse** (``RpcHttp``): its status, its headers (``content-type`` sets the content
  type; a name already sent, in any case, is dropped), its cookies, its body bytes unchanged.

What Kestrel or ASP.NET refuses here (a status outside 100-999, a header that is not ASCII, a
cookie name that is no token) is a host error: :class:`HostResponseError`, answered with 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local.host.http.cookies import CookieHeaderError, set_cookie_header
from local.host.http.encoding import HttpOutput, RpcHttp
from local.host.http.netjson import dotnet_text, newtonsoft_json

TEXT_PLAIN = "text/plain; charset=utf-8"
_INT32 = range(-(2**31), 2**31)
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_CHARSET = re.compile(r";\s*charset\s*=\s*[^;]*", re.IGNORECASE)
#: What ``List<object>.ToString()`` prints: a JSON array inside a response object becomes this.
_LIST_TEXT = "System.Collections.Generic.List`1[System.Object]"
_EXPANDO_TEXT = "System.Dynamic.ExpandoObject"


class HostResponseError(Exception):
    """The host could not write the response (it logs "An unhandled host error has occurred.")."""


@dataclass(frozen=True)
class HttpResult:
    """Status, headers (names as the function spelled them) and body, ready for the wire."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def http_result(output: HttpOutput) -> HttpResult:
    """The response for an ``http`` output the worker sent."""
    if isinstance(output, RpcHttp):
        return _from_rpc_http(output)
    if not output.strip():
        return _text(200, {}, "")  # Newtonsoft reads no value: no content
    try:
        value = json.loads(output)
    except ValueError:
        return _text(200, {}, output)
    if isinstance(value, dict):
        body_key = _find(value, "body")
        if body_key is not None:
            return _response_object(value, value[body_key])
    return _text(200, {}, dotnet_text(value))


def _from_rpc_http(output: RpcHttp) -> HttpResult:
    status = _status_of(output.status_code)
    headers, content_type = _headers(output.headers)
    if content_type is not None:
        headers.insert(0, ("content-type", content_type))
    try:
        headers += [("set-cookie", set_cookie_header(cookie)) for cookie in output.cookies]
    except CookieHeaderError as exc:
        raise HostResponseError(str(exc)) from exc
    return _checked(status, headers, output.body)


def _response_object(document: Mapping[str, Any], body: Any) -> HttpResult:
    """``ParseResponseObject``: a JSON object with ``body`` describes the whole response."""
    status = 200
    key = _find(document, "statusCode") or _find(document, "status")
    if key is not None:
        status = _json_status(document[key])
    headers_key = _find(document, "headers")
    headers = document[headers_key] if headers_key is not None else {}
    if not isinstance(headers, dict):
        headers = {}  # only an object can be the headers
    if isinstance(body, dict):
        text = newtonsoft_json(body, indented=False)  # Utility.ToJson(expando, Formatting.None)
    elif isinstance(body, list):
        text = _LIST_TEXT
    else:
        text = dotnet_text(body)
    return _text(status, headers, text)


def _text(status: int, raw_headers: Mapping[str, Any], text: str) -> HttpResult:
    """A string body through ASP.NET's ``StringOutputFormatter``: UTF-8, and so declared."""
    headers, content_type = _headers({name: _header_text(name, value) for name, value in raw_headers.items()})
    headers.insert(0, ("content-type", _utf8(content_type) if content_type else TEXT_PLAIN))
    return _checked(status, headers, text.encode("utf-8"))


def _headers(raw: Mapping[str, str]) -> tuple[list[tuple[str, str]], str | None]:
    """``RawScriptResult``'s headers: content type apart, the first of each name (any case) kept."""
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    content_type: str | None = None
    for name, value in raw.items():
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        elif lowered not in seen:
            seen.add(lowered)
            headers.append((name, value))
    return headers, content_type


def _header_text(name: str, value: Any) -> str:
    if value is None:
        if name.lower() == "content-type":
            raise HostResponseError("content-type header cannot be null")
        raise HostResponseError(f"header '{name}' has no value (null)")
    if isinstance(value, dict):
        return _EXPANDO_TEXT
    if isinstance(value, list):
        return _LIST_TEXT
    return dotnet_text(value)


def _checked(status: int, headers: list[tuple[str, str]], body: bytes) -> HttpResult:
    """Kestrel's checks on what is written: status range, ASCII headers, bodiless statuses."""
    if not 100 <= status <= 999:
        raise HostResponseError(f"status code {status} is outside 100-999")
    for name, value in headers:
        if not (name.isascii() and value.isascii()) or any(ord(c) < 0x20 and c != "\t" for c in name + value):
            raise HostResponseError(f"Invalid non-ASCII or control character in header '{name}'")
    declared = [value for name, value in headers if name.lower() == "content-length"]
    if declared and declared[0].strip() != str(len(body)):
        raise HostResponseError(
            f"Response Content-Length mismatch: {declared[0]} declared, {len(body)} written"
        )
    if body and status in (204, 205, 304):
        raise HostResponseError(
            f"Writing to the response body is invalid for responses with status code {status}."
        )
    kept = tuple((name, value) for name, value in headers if name.lower() != "content-length")
    return HttpResult(status, kept, body)


def _status_of(text: str) -> int:
    """``int.TryParse`` of the status the worker sent; 200 when it is not a whole number."""
    if _INTEGER.fullmatch(text) and int(text) in _INT32:
        return int(text)
    return 200


def _json_status(value: Any) -> int:
    """``TryParseStatusCode`` on a value from JSON: integers and integer strings count."""
    if isinstance(value, bool):
        return 200
    if isinstance(value, int):
        if value not in _INT32:
            raise HostResponseError(f"Value {value} was either too large or too small for an Int32.")
        return value
    if isinstance(value, str):
        return _status_of(value)
    return 200


def _find(document: Mapping[str, Any], key: str) -> str | None:
    """The property named ``key``, exactly or else ignoring case (the host's ``ignoreCase`` lookup)."""
    if key in document:
        return key
    return next((name for name in document if name.lower() == key.lower()), None)


def _utf8(content_type: str) -> str:
    """The content type with ``charset=utf-8``, replacing one that was given."""
    if _CHARSET.search(content_type):
        return _CHARSET.sub("; charset=utf-8", content_type, count=1)
    return f"{content_type}; charset=utf-8"
