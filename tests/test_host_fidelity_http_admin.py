"""``POST /admin/functions/{name}`` runs a non-HTTP function by hand, as the Functions host's admin API
(FunctionsController.Invoke): 202 at once, the master key, a JSON ``{"input": ...}`` body."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.platform.rabbitmq_topology import delete_queue_topology
from tests.conftest import AZURITE_CONNECTION_STRING, RABBITMQ_URL, require_service
from tests.hosting import RunningHost, start_host
from tests.waiting import eventually

APPS = Path(__file__).parent / "apps_worker"
MASTER_KEY = "master-key-for-admin-tests"
HOST_API_REASON = "Reason='This function was programmatically called via the host APIs.'"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("azurite")
    app_dir = tmp_path_factory.mktemp("manual") / "app"
    shutil.copytree(APPS / "manual", app_dir)
    (app_dir / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    queue = f"manual-{uuid.uuid4().hex[:12]}"
    settings = {
        "FUNCTIONS_MASTER_KEY": MASTER_KEY,
        "MANUAL_QUEUE": queue,
        "AzureWebJobsStorage": AZURITE_CONNECTION_STRING,
        "VALKEY_URL": "unused",
    }
    running = start_host(app_dir, settings=settings)
    yield running
    running.stop()
    for name in (queue, f"{queue}-bytes"):
        asyncio.run(delete_queue_topology(RABBITMQ_URL, name))


def _run(
    host: RunningHost,
    name: str,
    body: bytes = b'{"input": ""}',
    *,
    key: str | None = MASTER_KEY,
    content_type: str | None = "application/json",
) -> httpx.Response:
    headers = {"x-functions-key": key} if key is not None else {}
    if content_type is not None:
        headers["content-type"] = content_type
    return httpx.post(f"{host.base_url}/admin/functions/{name}", content=body, headers=headers)


def _logged(host: RunningHost, *parts: str) -> str:
    found: list[str] = []

    def line() -> bool:
        found[:] = [ln for ln in "".join(host.output).splitlines() if all(part in ln for part in parts)]
        return bool(found)

    eventually(line, within=10, what=f"a log line with {parts}")
    return found[0]


def test_a_timer_fires_now_not_past_due(host: RunningHost) -> None:
    response = _run(host, "new_year", b"{}")
    assert (response.status_code, response.content) == (202, b"")
    _logged(host, "new_year ran: past_due=False schedule={'AdjustForDST': True}")


def test_a_run_by_hand_is_a_host_api_call(host: RunningHost) -> None:
    assert _run(host, "new_year").status_code == 202
    _logged(host, "Executing 'Functions.new_year'", HOST_API_REASON)


def test_function_names_ignore_case(host: RunningHost) -> None:
    assert _run(host, "On_Message", b'{"Input": "any case"}').status_code == 202
    _logged(host, "on_message got 'any case'")


def test_a_queue_function_gets_the_input_as_its_message(host: RunningHost) -> None:
    assert _run(host, "on_message", b'{"input": "hello there"}').status_code == 202
    _logged(host, "on_message got 'hello there'")
    assert _run(host, "on_bytes", b'{"input": "payload"}').status_code == 202
    _logged(host, "on_bytes got b'payload'")


@pytest.mark.parametrize(("value", "seen"), [("42", "'42'"), ("true", "'True'"), ("2.50", "'2.5'")])
def test_numbers_and_booleans_arrive_as_dotnet_text(host: RunningHost, value: str, seen: str) -> None:
    assert _run(host, "on_message", f'{{"input": {value}, "marker": "{value}"}}'.encode()).status_code == 202
    _logged(host, f"on_message got {seen}")


def test_the_master_key_may_come_in_the_query(host: RunningHost) -> None:
    response = httpx.post(
        f"{host.base_url}/admin/functions/new_year",
        params={"code": MASTER_KEY},
        json={"input": "from the query"},
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("key", "status"),
    [(None, 401), ("not-a-key", 401), ("host", 403)],
    ids=["no key", "unknown key", "host key"],
)
def test_only_the_master_key_opens_the_admin_api(host: RunningHost, key: str | None, status: int) -> None:
    response = _run(host, "new_year", key=host.key if key == "host" else key)
    assert response.status_code == status


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", None, 415),
        (b'{"input": "x"}', "text/plain", 415),
        (b"", "application/json", 400),
        (b"not json", "application/json", 400),
        (b'["input"]', "application/json", 400),
        (b'{"input": {"nested": 1}}', "application/json", 400),
        (b'{"input": "x"}', "application/json; charset=utf-8", 202),
        (b'{"input": "x"}', "application/vnd.test+json", 202),
    ],
)
def test_the_body_must_be_a_json_invocation(
    host: RunningHost, body: bytes, content_type: str | None, status: int
) -> None:
    assert _run(host, "new_year", body, content_type=content_type).status_code == status


def test_an_unknown_function_is_404(host: RunningHost) -> None:
    assert _run(host, "no_such_function").status_code == 404


def test_the_body_is_checked_before_the_name(host: RunningHost) -> None:
    assert _run(host, "no_such_function", b"", content_type=None).status_code == 415


def test_an_http_function_is_accepted_but_not_run(host: RunningHost) -> None:
    assert _run(host, "health", b'{"input": "x"}').status_code == 202
    _logged(host, "'Functions.health' was not run", "An HttpRequest is required")


def test_other_methods_are_not_offered(host: RunningHost) -> None:
    response = httpx.get(f"{host.base_url}/admin/functions/new_year", headers={"x-functions-key": MASTER_KEY})
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
