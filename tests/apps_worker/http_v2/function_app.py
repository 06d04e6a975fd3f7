"""A v2 app exercising what the Python worker's own HTTP tests exercise (its ``http_functions_stein``
app, ``tests/unittests/test_http_functions.py``): outputs, cookies, the request, the context.

Written for this project; the routes keep the worker's names so the two can be compared.
"""

import asyncio
import contextvars
import hashlib
import json
import logging

import azure.functions as func

app = func.FunctionApp()  # function-level keys, as the worker's app
log = logging.getLogger("worker_app")
counter: contextvars.ContextVar[int] = contextvars.ContextVar("counter")


@app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("ok")


@app.route(route="return_str")
def return_str(req: func.HttpRequest) -> str:
    return "Hello World!"


@app.route(route="async_return_str")
async def async_return_str(req: func.HttpRequest) -> str:
    await asyncio.sleep(0.01)
    return "Hello Async World!"


@app.route(route="return_http")
def return_http(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<h1>Hello World™</h1>", mimetype="text/html")


@app.route(route="return_http_404")
def return_http_404(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("bye", status_code=404)


@app.route(route="return_http_no_body")
def return_http_no_body(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse()


@app.route(route="return_http_redirect")
def return_http_redirect(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(status_code=302, headers={"location": f"return_http?code={req.params['code']}"})


@app.route(route="return_http_auth_admin", auth_level=func.AuthLevel.ADMIN)
def return_http_auth_admin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("<h1>Hello World™</h1>", mimetype="text/html")


@app.route(route="return_out", binding_arg_name="foo")
def return_out(req: func.HttpRequest, foo: func.Out[func.HttpResponse]) -> None:
    foo.set(func.HttpResponse(body="hello", status_code=201))


@app.route(route="return_out_unset", binding_arg_name="foo")
def return_out_unset(req: func.HttpRequest, foo: func.Out[func.HttpResponse]) -> None:
    log.info("return_out_unset leaves its output alone")


@app.route(route="return_out_and_value", binding_arg_name="foo")
def return_out_and_value(req: func.HttpRequest, foo: func.Out[func.HttpResponse]):
    foo.set(func.HttpResponse("set"))
    return "also returned"


@app.route(route="return_bytes")
def return_bytes(req: func.HttpRequest):
    return b"Hello World!"


@app.route(route="return_dict")
def return_dict(req: func.HttpRequest):
    return {"key": "value"}


@app.route(route="return_int")
def return_int(req: func.HttpRequest):
    return 1000


@app.route(route="return_json_text")
def return_json_text(req: func.HttpRequest) -> str:
    return json.dumps({"name": "Zoë", "sizes": [1, 2.0], "none": None})


@app.route(route="return_number_text")
def return_number_text(req: func.HttpRequest) -> str:
    return "1.50"


@app.route(route="return_response_object")
def return_response_object(req: func.HttpRequest) -> str:
    return json.dumps({"body": "made", "statusCode": 201, "headers": {"X-Kind": "object"}})


@app.route(route="no_return")
def no_return(req: func.HttpRequest):
    log.info("no_return ran")


@app.route(route="no_return_returns")
def no_return_returns(req):
    return "ABC"


def _context_document(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    trace = context.trace_context
    retry = context.retry_context
    document = {
        "method": req.method,
        "ctx_func_name": context.function_name,
        "ctx_func_dir": context.function_directory,
        "ctx_invocation_id": context.invocation_id,
        "ctx_trace_context_Traceparent": trace.Traceparent,
        "ctx_trace_context_Tracestate": trace.Tracestate,
        "ctx_trace_context_Attributes": trace.Attributes,
        "trace_parent_same": trace.trace_parent == trace.Traceparent,
        "retry": [retry.retry_count, retry.max_retry_count, retry.rpc_exception.message],
        "retry_has_exception": hasattr(retry, "exception"),
        "thread_invocation_id": getattr(context.thread_local_storage, "invocation_id", None),
        "is_library_context": isinstance(context, func.Context),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


@app.route(route="return_context")
def return_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _context_document(req, context)


@app.route(route="return_context_async")
async def return_context_async(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    return _context_document(req, context)


@app.route(route="remapped_context")
def remapped_context(req: func.HttpRequest) -> str:
    return req.method


@app.route(route="return_request", methods=["GET", "POST"])
def return_request(req: func.HttpRequest) -> func.HttpResponse:
    params = dict(req.params)
    params.pop("code", None)
    body = req.get_body()
    document = {
        "method": req.method,
        "url": req.url,
        "headers": dict(req.headers),
        "params": params,
        "get_body": body.decode(),
        "body_hash": hashlib.sha256(body).hexdigest(),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


@app.route(route="accept_json", methods=["POST"])
def accept_json(req: func.HttpRequest) -> func.HttpResponse:
    document = {"method": req.method, "url": req.url, "get_json": req.get_json()}
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


@app.route(route="return_route_params/{param1}/{param2}")
def return_route_params(req: func.HttpRequest) -> str:
    return json.dumps(dict(req.route_params))


@app.route(route="raw_body_bytes", methods=["POST"])
def raw_body_bytes(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body()
    return func.HttpResponse(body=body, status_code=200, headers={"body-len": str(len(body))})


@app.route(route="unhandled_error")
def unhandled_error(req: func.HttpRequest) -> str:
    return str(1 / 0)


@app.route(route="user_event_loop")
def user_event_loop(req: func.HttpRequest) -> str:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    return "OK-user-event-loop"


async def _count(name: str) -> str:
    rounds = counter.get()
    for _ in range(rounds):
        await asyncio.sleep(0.01)
    return f"Finished {name} in {rounds}"


@app.route(route="create_task_with_context")
async def create_task_with_context(req: func.HttpRequest) -> str:
    counter.set(5)
    first = asyncio.create_task(_count("Hello World"), context=contextvars.copy_context())
    counter.set(10)
    second = asyncio.create_task(_count("Hello World"), context=contextvars.copy_context())
    return f"{await first} | {await second}"


def _with_cookies(*values: str) -> func.HttpResponse:
    response = func.HttpResponse("This HTTP triggered function executed successfully.")
    for value in values:
        response.headers.add("Set-Cookie", value)
    return response


@app.route(route="multiple_set_cookie_resp_headers")
def multiple_set_cookie_resp_headers(req: func.HttpRequest) -> func.HttpResponse:
    response = _with_cookies(
        "foo3=42; Domain=example.com; Expires=Thu, 12-Jan-2017 13:55:08 GMT; Path=/; Max-Age=10000000; "
        "Secure; HttpOnly",
        "foo3=43; Domain=example.com; Expires=Thu, 12-Jan-2018 13:55:08 GMT; Path=/; Max-Age=10000000; "
        "Secure; HttpOnly",
    )
    response.headers.add("HELLO", "world")
    return response


@app.route(route="set_cookie_resp_header_default_values")
def set_cookie_resp_header_default_values(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies("foo=bar")


@app.route(route="set_cookie_resp_header_empty")
def set_cookie_resp_header_empty(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies("")


@app.route(route="set_cookie_same_site_and_value")
def set_cookie_same_site_and_value(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies('theme="dark mode"; SameSite=Strict; Max-Age=90.7; Path=/app', "a=1; b=2")


@app.route(route="response_cookie_header_nullable_timestamp_err")
def response_cookie_header_nullable_timestamp_err(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies("foo=bar; Domain=123; Expires=Dummy")


@app.route(route="response_cookie_header_nullable_bool_err")
def response_cookie_header_nullable_bool_err(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies(
        "foo3=42; Domain=example.com; Expires=Thu, 12-Jan-2017 13:55:08 GMT; Path=/; Max-Age=10000000; "
        "SecureFalse; HttpOnly"
    )


@app.route(route="response_cookie_header_nullable_double_err")
def response_cookie_header_nullable_double_err(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies(
        "foo3=42; Domain=example.com; Expires=Thu, 12-Jan-2017 13:55:08 GMT; Path=/; Max-Age=Dummy; "
        "SecureFalse; HttpOnly"
    )


@app.route(route="response_cookie_max_age_not_a_number")
def response_cookie_max_age_not_a_number(req: func.HttpRequest) -> func.HttpResponse:
    return _with_cookies("foo=bar; Max-Age=Dummy")


@app.route(route="administer")
def administer(req: func.HttpRequest) -> str:
    return "the host keeps admin* routes for itself: this function is in error"
