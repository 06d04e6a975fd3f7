"""HTTP functions under our host answer as under the Functions host and the Python worker.

The app (tests/apps_worker/http_v2) does what the worker's ``http_functions_stein`` app does, and
each test checks what the worker's ``TestHttpFunctionsStein`` expects of it, plus the outputs,
cookies and context details found in the worker's and host's source (cited in local/host/http/).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hosting import RunningHost, start_host
from tests.waiting import eventually

APPS = Path(__file__).parent / "apps_worker"
MASTER_KEY = "master-key-for-fidelity-tests"
ENCODE_FAILURE = (
    'TypeError: unable to encode outgoing TypedData: unsupported type "<class '
    '\'azure.functions.http.HttpResponseConverter\'>" for Python type "{}"'
)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    app_dir = tmp_path_factory.mktemp("fidelity") / "app"
    shutil.copytree(APPS / "http_v2", app_dir)
    (app_dir / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    running = start_host(app_dir, settings={"FUNCTIONS_MASTER_KEY": MASTER_KEY, "VALKEY_URL": "unused"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(host: RunningHost) -> Iterator[httpx.Client]:
    """A client with the host key, as the worker's tests call with a function key."""
    with httpx.Client(base_url=f"{host.base_url}/api/", headers={"x-functions-key": host.key}) as client:
        yield client


def _logged(host: RunningHost, *parts: str) -> None:
    eventually(
        lambda: any(all(part in line for part in parts) for line in "".join(host.output).splitlines()),
        within=5,
        what=f"a log line with {parts}",
    )


def _failed_invocation_logged(host: RunningHost, response: httpx.Response, detail: str) -> None:
    """The host logged the invocation as failed, with ``detail`` in what it printed about it."""
    invocation_id = response.json()["invocationId"]
    _logged(host, "Executed 'Functions.", f"(Failed, Id={invocation_id}")
    eventually(lambda: detail in "".join(host.output), within=5, what=detail)


# Outputs: str and HttpResponse are encoded; None, bytes and other values fail the invocation.


def test_a_string_is_plain_text(http: httpx.Client) -> None:
    response = http.get("return_str")
    assert (response.status_code, response.text) == (200, "Hello World!")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert http.get("async_return_str").text == "Hello Async World!"
    assert http.get("remapped_context").text == "GET"


def test_an_http_response_keeps_its_status_body_and_content_type(http: httpx.Client) -> None:
    html = http.get("return_http")
    assert (html.status_code, html.text) == (200, "<h1>Hello World™</h1>")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    missing = http.get("return_http_404")
    assert (missing.status_code, missing.text) == (404, "bye")
    assert missing.headers["content-type"] == "text/plain; charset=utf-8"
    empty = http.get("return_http_no_body")
    assert (empty.status_code, empty.text) == (200, "")


def test_a_redirect_is_followed_to_its_target(http: httpx.Client, host: RunningHost) -> None:
    redirect = http.get("return_http_redirect", params={"code": host.key})
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"return_http?code={host.key}"
    followed = http.get("return_http_redirect", params={"code": host.key}, follow_redirects=True)
    assert (followed.status_code, followed.text) == (200, "<h1>Hello World™</h1>")


def test_an_admin_function_opens_with_the_master_key(host: RunningHost) -> None:
    url = f"{host.base_url}/api/return_http_auth_admin"
    assert httpx.get(url, params={"code": MASTER_KEY}).status_code == 200
    assert httpx.get(url, params={"code": host.key}).status_code == 401


def test_a_named_http_output_is_the_response(http: httpx.Client) -> None:
    response = http.get("return_out")
    assert (response.status_code, response.text) == (201, "hello")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    # Left unset, there is no response object at all: the host's ObjectResult(null), 204.
    assert http.get("return_out_unset").status_code == 204


@pytest.mark.parametrize(("route", "python_type"), [("return_bytes", "bytes"), ("no_return", "NoneType")])
def test_bytes_or_none_for_return_fail_the_invocation(
    http: httpx.Client, host: RunningHost, route: str, python_type: str
) -> None:
    response = http.get(route)
    assert response.status_code == 500
    _failed_invocation_logged(host, response, ENCODE_FAILURE.format(python_type))


@pytest.mark.parametrize(("route", "python_type"), [("return_dict", "dict"), ("return_int", "int")])
def test_dicts_and_numbers_are_not_made_json(
    http: httpx.Client, host: RunningHost, route: str, python_type: str
) -> None:
    response = http.get(route)
    assert response.status_code == 500
    _failed_invocation_logged(host, response, ENCODE_FAILURE.format(python_type))


def test_a_value_returned_beside_a_named_output_fails(http: httpx.Client, host: RunningHost) -> None:
    response = http.get("return_out_and_value")
    assert response.status_code == 500
    _failed_invocation_logged(
        host, response, "function 'return_out_and_value' without a $return bindingreturned a non-None value"
    )


def test_a_function_without_annotations_returns_its_string(http: httpx.Client) -> None:
    assert (http.get("no_return_returns").status_code, http.get("no_return_returns").text) == (200, "ABC")


def test_json_text_comes_back_as_the_host_rewrites_it(http: httpx.Client) -> None:
    response = http.get("return_json_text")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == '{\n  "name": "Zoë",\n  "sizes": [\n    1,\n    2.0\n  ],\n  "none": null\n}'
    assert http.get("return_number_text").text == "1.5"


def test_json_text_with_a_body_is_a_response_object(http: httpx.Client) -> None:
    response = http.get("return_response_object")
    assert (response.status_code, response.text) == (201, "made")
    assert response.headers["x-kind"] == "object"


def test_an_unhandled_error_is_500_and_logged(http: httpx.Client, host: RunningHost) -> None:
    response = http.get("unhandled_error")
    assert response.status_code == 500
    _failed_invocation_logged(host, response, "ZeroDivisionError: division by zero")


def test_a_route_in_the_hosts_own_space_is_refused(http: httpx.Client, host: RunningHost) -> None:
    _logged(host, "administer", "The specified route conflicts with one or more built in routes.")
    assert http.get("administer").status_code == 404
    assert http.get("return_str").status_code == 200  # the other functions run


# The request as the function sees it.


def test_the_request_reaches_the_function(http: httpx.Client) -> None:
    response = http.get(
        "return_request", params={"a": 1, "b": ":%)"}, headers={"xxx": "zzz", "Max-Forwards": "10"}
    )
    request = response.json()
    assert request["method"] == "GET"
    assert request["params"] == {"a": "1", "b": ":%)"}
    assert request["headers"]["xxx"] == "zzz"
    assert request["headers"]["max-forwards"] == "10"
    assert "return_request" in request["url"]
    posted = http.post("return_request", params={"a": 1}, data={"key": "value"}).json()
    assert (posted["method"], posted["get_body"]) == ("POST", "key=value")


def test_a_json_body_arrives_untouched(http: httpx.Client) -> None:
    body = b'{"foo":  "bar", "two":  4}'
    request = http.post("return_request", headers={"Content-Type": "application/json"}, content=body).json()
    assert request["body_hash"] == hashlib.sha256(body).hexdigest()
    accepted = http.post("accept_json", json={"a": "abc", "d": 42}).json()
    assert (accepted["method"], accepted["get_json"]) == ("POST", {"a": "abc", "d": 42})


def test_route_parameters(http: httpx.Client) -> None:
    assert http.get("return_route_params/foo/bar").json() == {"param1": "foo", "param2": "bar"}


@pytest.mark.parametrize("content_type", [None, "image/png", "application/octet-stream"])
def test_binary_bodies_round_trip(http: httpx.Client, content_type: str | None) -> None:
    image = bytes(range(256)) * 64
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("raw_body_bytes", content=image, headers=headers)
    assert int(response.headers["body-len"]) == len(image)
    assert response.content == image


def test_event_loops_and_context_variables_in_functions(http: httpx.Client) -> None:
    assert http.get("user_event_loop").text == "OK-user-event-loop"
    assert (
        http.get("create_task_with_context").text == "Finished Hello World in 5 | Finished Hello World in 10"
    )


# Set-Cookie: parsed by the worker, written by ASP.NET Core.


def _cookies(response: httpx.Response) -> str | None:
    """``Set-Cookie`` headers joined as ``requests`` joins them in the worker's tests."""
    values = response.headers.get_list("set-cookie")
    return ", ".join(values) if values else None


def test_several_cookies_with_their_attributes(http: httpx.Client) -> None:
    response = http.get("multiple_set_cookie_resp_headers")
    assert response.status_code == 200
    assert _cookies(response) == (
        "foo3=42; expires=Thu, 12 Jan 2017 13:55:08 GMT; max-age=10000000; domain=example.com; path=/; "
        "secure; httponly, foo3=43; expires=Fri, 12 Jan 2018 13:55:08 GMT; max-age=10000000; "
        "domain=example.com; path=/; secure; httponly"
    )
    assert response.headers["hello"] == "world"


def test_a_bare_cookie_gets_empty_domain_and_path(http: httpx.Client) -> None:
    assert _cookies(http.get("set_cookie_resp_header_default_values")) == "foo=bar; domain=; path="


def test_an_empty_set_cookie_sets_nothing(http: httpx.Client) -> None:
    response = http.get("set_cookie_resp_header_empty")
    assert (response.status_code, _cookies(response)) == (200, None)


def test_same_site_encoded_value_and_two_cookies_in_one_header(http: httpx.Client) -> None:
    assert _cookies(http.get("set_cookie_same_site_and_value")) == (
        "theme=dark%20mode; max-age=90; domain=; path=/app; samesite=strict, "
        "a=1; domain=; path=, b=2; domain=; path="
    )


@pytest.mark.parametrize(
    "route", ["response_cookie_header_nullable_bool_err", "response_cookie_header_nullable_double_err"]
)
def test_a_cookie_python_cannot_parse_is_dropped(http: httpx.Client, route: str) -> None:
    response = http.get(route)
    assert (response.status_code, _cookies(response)) == (200, None)


def test_an_unreadable_expires_fails_the_invocation(http: httpx.Client, host: RunningHost) -> None:
    response = http.get("response_cookie_header_nullable_timestamp_err")
    assert response.status_code == 500
    _logged(host, "Can not parse value Dummy of expires in the cookie due to invalid format.")
    _failed_invocation_logged(host, response, "Unknown string format: Dummy")


def test_a_max_age_that_is_no_number_fails_the_invocation(http: httpx.Client, host: RunningHost) -> None:
    response = http.get("response_cookie_max_age_not_a_number")
    assert response.status_code == 500
    _failed_invocation_logged(host, response, "Cannot parse value Dummy of 'cookie.maxAge' to float.")


# The context argument.


def test_the_context_has_the_workers_attributes(http: httpx.Client, host: RunningHost) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = http.get("return_context", headers={"traceparent": parent, "tracestate": "k=v"})
    context = response.json()
    assert context["method"] == "GET"
    assert context["ctx_func_name"] == "return_context"
    assert Path(context["ctx_func_dir"]).name == "app"
    assert context["ctx_trace_context_Traceparent"] == parent
    assert context["ctx_trace_context_Tracestate"] == "k=v"
    assert context["ctx_trace_context_Attributes"] == {}
    assert context["trace_parent_same"] is True
    assert context["retry"] == [0, 0, ""]
    assert context["retry_has_exception"] is False
    assert context["is_library_context"] is False


@pytest.mark.parametrize("route", ["return_context", "return_context_async"])
def test_the_thread_local_storage_names_the_invocation(http: httpx.Client, route: str) -> None:
    context = http.get(route).json()
    assert context["thread_invocation_id"] == context["ctx_invocation_id"]
