"""The pure rules behind the host's HTTP fidelity, from tables: how the worker encodes an output,
how the host writes it back (.NET numbers, Newtonsoft JSON, Set-Cookie) and which key opens what."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from local.host.context import Context, RetryContext, TraceContext
from local.host.http.cookies import CookieHeaderError, RpcCookie, SameSite, rpc_cookies, set_cookie_header
from local.host.http.encoding import RpcHttp, encode_http
from local.host.http.keys import KeyRing
from local.host.http.netjson import dotnet_double, newtonsoft_json
from local.host.http.results import HostResponseError, http_result
from local.host.http.server import http_routes
from local.host.indexing import Binding, IndexedFunction


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.0, "-0"),
        (100.0, "100"),
        (123456789012345.0, "123456789012345"),
        (1e15, "1E+15"),
        (1234567890123456.0, "1.234567890123456E+15"),
        (0.0001, "0.0001"),
        (0.00001, "1E-05"),
        (1.5e-7, "1.5E-07"),
        (1.7976931348623157e308, "1.7976931348623157E+308"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_doubles_print_as_dotnet_prints_them(value: float, text: str) -> None:
    assert dotnet_double(value) == text


@pytest.mark.parametrize(
    ("value", "indented", "text"),
    [
        ({}, True, "{}"),
        ([], True, "[]"),
        ({"a": [1, {"b": None}]}, True, '{\n  "a": [\n    1,\n    {\n      "b": null\n    }\n  ]\n}'),
        ({"a": 1.0, "b": 1e20, "c": "é\u2028"}, False, '{"a":1.0,"b":1E+20,"c":"é\\u2028"}'),
        ([True, "x\n"], False, '[true,"x\\n"]'),
    ],
)
def test_json_is_written_as_newtonsoft_writes_it(value: Any, indented: bool, text: str) -> None:
    assert newtonsoft_json(value, indented=indented) == text


@pytest.mark.parametrize(
    ("returned", "status", "content_type", "body"),
    [
        ("Hello", 200, "text/plain; charset=utf-8", b"Hello"),
        ("", 200, "text/plain; charset=utf-8", b""),
        ("   ", 200, "text/plain; charset=utf-8", b""),
        ("null", 200, "text/plain; charset=utf-8", b""),
        ("true", 200, "text/plain; charset=utf-8", b"True"),
        ("007", 200, "text/plain; charset=utf-8", b"007"),  # not JSON for Python (Newtonsoft: octal 7)
        ('"quoted"', 200, "text/plain; charset=utf-8", b"quoted"),
        ('{"a":1}', 200, "text/plain; charset=utf-8", b'{\n  "a": 1\n}'),
        ('{"body": {"id": 7}, "status": "202"}', 202, "text/plain; charset=utf-8", b'{"id":7}'),
        ('{"BODY": "x", "statusCode": 404.0}', 200, "text/plain; charset=utf-8", b"x"),
        (
            '{"body": "x", "headers": {"Content-Type": "application/json; charset=latin1"}}',
            200,
            "application/json; charset=utf-8",
            b"x",
        ),
        (
            '{"body": [1, 2]}',
            200,
            "text/plain; charset=utf-8",
            b"System.Collections.Generic.List`1[System.Object]",
        ),
    ],
)
def test_a_returned_string_as_the_host_writes_it(
    returned: str, status: int, content_type: str, body: bytes
) -> None:
    result = http_result(returned)
    assert (result.status, dict(result.headers)["content-type"], result.body) == (status, content_type, body)


@pytest.mark.parametrize(
    "returned",
    [
        '{"body": "x", "status": 99}',
        '{"body": "x", "statusCode": 4294967296}',
        '{"body": "x", "headers": {"X-A": null}}',
        '{"body": "x", "headers": {"Content-Type": null}}',
        '{"body": "x", "status": 204}',
        '{"body": "x", "headers": {"X-A": "é"}}',
    ],
)
def test_what_kestrel_refuses_is_a_host_error(returned: str) -> None:
    with pytest.raises(HostResponseError):
        http_result(returned)


def test_an_http_response_keeps_the_first_spelling_of_a_header() -> None:
    output = RpcHttp("201", {"X-A": "1", "x-a": "2", "Content-Type": "image/png"}, (), b"\x89PNG")
    result = http_result(output)
    assert (result.status, result.headers, result.body) == (
        201,
        (("content-type", "image/png"), ("X-A", "1")),
        b"\x89PNG",
    )


@pytest.mark.parametrize(("status", "expected"), [("abc", 200), (" 201 ", 201), ("99999999999", 200)])
def test_a_status_that_is_no_int32_is_200(status: str, expected: int) -> None:
    assert http_result(RpcHttp(status, {}, (), b"")).status == expected


def test_encoding_fails_like_the_worker_for_what_http_cannot_carry() -> None:
    with pytest.raises(TypeError, match='for Python type "bytearray"'):
        encode_http(bytearray(b"x"))


def test_an_http_response_loses_its_set_cookie_headers_to_cookies() -> None:
    response = func.HttpResponse("hi", headers={"X-Keep": "1"})
    response.headers.add("Set-Cookie", "a=1; HttpOnly")
    encoded = encode_http(response)
    assert isinstance(encoded, RpcHttp)
    assert encoded.headers == {"X-Keep": "1", "content-type": "text/plain; charset=utf-8"}
    assert [(c.name, c.value, c.http_only) for c in encoded.cookies] == [("a", "1", True)]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a=1", RpcCookie("a", "1", "", "", None, False, False, SameSite.NONE, None)),
        ("a=1; SameSite=Lax; Secure", RpcCookie("a", "1", "", "", None, True, False, SameSite.LAX, None)),
        ("a=1; samesite=none", RpcCookie("a", "1", "", "", None, False, False, SameSite.EXPLICIT_NONE, None)),
        ("a=1; SameSite=odd", RpcCookie("a", "1", "", "", None, False, False, SameSite.NONE, None)),
        ("a=1; Max-Age=-5", RpcCookie("a", "1", "", "", None, False, False, SameSite.NONE, -5.0)),
        (
            "a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
            RpcCookie("a", "1", "", "", 1445412480, False, False, SameSite.NONE, None),
        ),
    ],
)
def test_the_worker_reads_cookie_attributes(header: str, expected: RpcCookie) -> None:
    assert rpc_cookies([SimpleCookie(header)]) == (expected,)


@pytest.mark.parametrize(
    ("cookie", "header"),
    [
        (RpcCookie("a", "1"), "a=1; path=/"),
        (RpcCookie("a", "x y/z=é", path=""), "a=x%20y%2Fz%3D%C3%A9; path="),
        (RpcCookie("a", "1", max_age=1.999, secure=True), "a=1; max-age=1; path=/; secure"),
        (RpcCookie("a", "1", max_age=-0.5), "a=1; max-age=0; path=/"),
        (
            RpcCookie("a", "1", expires=0, same_site=SameSite.STRICT),
            "a=1; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/; samesite=strict",
        ),
        (RpcCookie("a", "1", same_site=SameSite.NONE, http_only=True), "a=1; path=/; httponly"),
    ],
)
def test_the_host_writes_set_cookie_as_aspnet_core(cookie: RpcCookie, header: str) -> None:
    assert set_cookie_header(cookie) == header


@pytest.mark.parametrize(
    "cookie",
    [RpcCookie("a:b", "1"), RpcCookie("a", "1", max_age=float("nan")), RpcCookie("a", "1", max_age=1e13)],
)
def test_what_aspnet_core_refuses_in_a_cookie(cookie: RpcCookie) -> None:
    with pytest.raises(CookieHeaderError):
        set_cookie_header(cookie)


@pytest.mark.parametrize(
    ("presented", "level"),
    [
        ("m", "admin"),
        ("h1", "function"),
        ("h2", "function"),
        ("f", None),
        ("", None),
        (None, None),
        ("x", None),
    ],
)
def test_the_level_a_key_grants_outside_any_function(presented: str | None, level: str | None) -> None:
    keys = KeyRing(master=("m",), host=("h1", "h2"), functions={"fn": ("f",)})
    assert keys.level(presented) == level


def test_the_context_is_shaped_as_the_workers() -> None:
    context = Context("id-1", "fn", "/app", TraceContext("00-a-b-01", "k=v", {"x": "y"}))
    trace = context.trace_context
    assert (trace.Traceparent, trace.Tracestate, trace.Attributes) == ("00-a-b-01", "k=v", {"x": "y"})
    assert (trace.trace_parent, trace.trace_state, trace.attributes) == ("00-a-b-01", "k=v", {"x": "y"})
    assert context.retry_context == RetryContext(0, 0)
    assert context.retry_context.rpc_exception.stack_trace == ""
    assert context.function_directory == "/app"
    assert not isinstance(context, func.Context)
    assert context.thread_local_storage is Context("id-2", "g", "/", trace).thread_local_storage


@pytest.mark.parametrize(
    ("name", "route", "refused"),
    [
        ("f", "admin/thing", True),
        ("f", "/Administer/", True),
        ("runtime_status", None, True),
        ("f", "api/admin", False),
        ("f", "tasks/{id}", False),
    ],
)
def test_routes_the_host_keeps_for_itself(name: str, route: str | None, refused: bool) -> None:
    trigger = Binding("req", "httpTrigger", "IN", {"route": route} if route else {})
    fn = IndexedFunction(name, trigger, (trigger,), lambda req: None, Path("."))
    table, errors = http_routes([fn], "api")
    assert [e.reason for e in errors] == (
        ["The specified route conflicts with one or more built in routes."] if refused else []
    )
    assert (table.find("/api/" + (route or name).strip("/"), "GET") is None) is refused
