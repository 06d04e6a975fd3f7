"""HTTP triggers through the host's front: routing, auth levels, bodies, outputs and failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from local.host.runner import LoadedHost, load
from tests.apps import forget_app, write_app

APP = """
import asyncio
import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="open/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}")


@app.route(route="items/{id:int}", methods=["GET", "PUT"])
async def item(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    body = {"id": int(req.route_params["id"]), "method": req.method, "q": req.params.get("q"),
            "function": context.function_name, "invocation": context.invocation_id,
            "traceparent": context.trace_context.trace_parent}
    return func.HttpResponse(json.dumps(body), mimetype="application/json", status_code=201)


@app.route(route="manage/thing", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
def admin_thing(req: func.HttpRequest) -> str:
    return "admin ok"


@app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body())


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> str:
    raise RuntimeError("secret detail that must not reach the client")


@app.route(route="named", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS, binding_arg_name="res")
def named(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
    res.set(func.HttpResponse("from named output", status_code=202))


@app.route(route="%ROUTE_SETTING%", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def from_setting(req: func.HttpRequest) -> str:
    return "resolved"
"""

HOST_KEY = "host-key-for-tests"
ITEM_KEY = "item-key-for-tests"
MASTER_KEY = "master-key-for-tests"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app_dir = write_app(tmp_path / "app", APP, settings={"ROUTE_SETTING": "configured/path"})
    environ = {
        "FUNCTIONS_HOST_KEY": HOST_KEY,
        "FUNCTIONS_KEY_ITEM": ITEM_KEY,
        "FUNCTIONS_MASTER_KEY": MASTER_KEY,
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024",
    }
    forget_app(app_dir)
    loaded: LoadedHost = load(app_dir, environ)
    forget_app(app_dir)
    assert loaded.errors == []
    transport = httpx.ASGITransport(app=loaded.front)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:7071") as http:
        yield http
    assert loaded.invoker is not None
    loaded.invoker.close()


async def test_anonymous_route_with_constraint(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/open/world")
    assert (response.status_code, response.text) == (200, "hello world")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert (await client.get("/api/open/w0rld")).status_code == 404


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"x-functions-key": "wrong"}, "", 401),
        ({"x-functions-key": HOST_KEY}, "", 201),
        ({}, f"?code={HOST_KEY}", 201),
        ({"x-functions-key": ITEM_KEY}, "", 201),
        ({"x-functions-key": MASTER_KEY}, "", 201),
    ],
)
async def test_function_level_keys(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, status: int
) -> None:
    response = await client.get(f"/api/items/7{query}", headers=headers)
    assert response.status_code == status


@pytest.mark.parametrize(("key", "status"), [(HOST_KEY, 401), (ITEM_KEY, 401), (MASTER_KEY, 200)])
async def test_admin_level_needs_the_master_key(client: httpx.AsyncClient, key: str, status: int) -> None:
    response = await client.post("/api/manage/thing", headers={"x-functions-key": key})
    assert response.status_code == status
    if status == 200:
        assert response.text == "admin ok"


async def test_request_reaches_the_function_whole(client: httpx.AsyncClient) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = await client.put(
        "/api/items/42?q=search", headers={"x-functions-key": HOST_KEY, "traceparent": parent}
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == 42
    assert body["method"] == "PUT"
    assert body["q"] == "search"
    assert body["function"] == "item"
    assert body["traceparent"] == parent
    assert len(body["invocation"]) == 36


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/items/1", headers={"x-functions-key": HOST_KEY})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT"


async def test_unknown_path_and_missing_prefix_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/nothing")).status_code == 404
    assert (await client.get("/open/world")).status_code == 404


async def test_failure_is_500_with_invocation_id_and_no_detail(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await client.get("/api/boom")
    assert response.status_code == 500
    invocation_id = response.json()["invocationId"]
    assert response.headers["x-ms-invocation-id"] == invocation_id
    assert "secret detail" not in response.text
    # The error and its stack are in the log, under the same invocation id, as the host prints them
    (failure,) = [r for r in caplog.records if invocation_id in r.getMessage()]
    message = failure.getMessage()
    assert "Exception: RuntimeError: secret detail that must not reach the client" in message
    assert "Stack:" in message


async def test_body_limit_gives_413(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/echo", content=b"x" * 1024)).content == b"x" * 1024
    assert (await client.post("/api/echo", content=b"x" * 1025)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit holds while streaming
        for _ in range(3):
            yield b"y" * 512

    assert (await client.post("/api/echo", content=chunks())).status_code == 413


async def test_named_http_output(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/named")
    assert (response.status_code, response.text) == (202, "from named output")


async def test_route_from_a_setting(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/configured/path")).text == "resolved"
