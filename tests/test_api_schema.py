"""Schemathesis against the served OpenAPI document: whatever it generates, the API never answers 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import function_app  # noqa: F401  (declares the routes)
from functions import openapi
from functions.http import DECLARED
from shared import tasks
from tests.conftest import require_service
from tests.hosting import RunningHost, start_host

schema = schemathesis.openapi.from_dict(openapi.document(tasks.registry, DECLARED))


@pytest.fixture(scope="module")
def api_host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("valkey")
    host = start_host()
    yield host
    host.stop()


def test_served_document_is_the_one_tested(api_host: RunningHost) -> None:
    with api_host.client() as http:
        served = http.get("/api/openapi.json").json()
    # Only the servers differ: the served document names the absolute URL it was reached at.
    assert served["servers"] == [{"url": f"{api_host.base_url}/api"}]
    assert served | {"servers": None} == openapi.document(tasks.registry, DECLARED) | {"servers": None}


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, api_host: RunningHost) -> None:
    response = case.call(base_url=f"{api_host.base_url}/api", headers={"x-functions-key": api_host.key})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    if response.status_code == 202:
        # Accepted means every task is retrievable
        items = response.json() if isinstance(response.json(), list) else [response.json()]
        for item in items[:3]:
            status = httpx.get(
                f"{api_host.base_url}/api/tasks/{item['id']}", headers={"x-functions-key": api_host.key}
            )
            assert status.status_code == 200
