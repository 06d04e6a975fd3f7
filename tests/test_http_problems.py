"""Errors answer as the problem table says, and every answer the API gives is in its OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import function_app  # noqa: F401  (declares the routes)
from functions.http import DECLARED
from functions.openapi import document
from shared.tasks import registry
from tests.conftest import require_service, undocumented_answers
from tests.hosting import RunningHost, free_port, start_host


@pytest.fixture(scope="module")
def host_without_valkey() -> Iterator[RunningHost]:
    # Given a host whose Valkey is a port nothing listens on
    require_service("rabbitmq")
    host = start_host(settings={"VALKEY_URL": f"valkey://127.0.0.1:{free_port()}/0"})
    yield host
    host.stop()


@pytest.mark.parametrize("path", ["/api/stats", "/api/tasks/4b1c0f0e-unknown"])
def test_reads_answer_503_naming_valkey_when_it_is_down(host_without_valkey: RunningHost, path: str) -> None:
    # When a client reads while Valkey is down
    with host_without_valkey.client() as http:
        response = http.get(path)

    # Then the answer is a 503 that names Valkey and says when to retry, not a 500
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    body = response.json()
    assert body["dependency"] == "valkey"
    assert "Valkey" in body["error"]


def test_the_document_lists_the_503s_of_the_reads() -> None:
    paths = document(registry, DECLARED)["paths"]

    assert "503" in paths["/tasks/{id}"]["get"]["responses"]
    assert "503" in paths["/stats"]["get"]["responses"]
    assert "Retry-After" in paths["/stats"]["get"]["responses"]["503"]["headers"]
    # and the submission's idempotency answers: in flight (409), another body (422)
    assert {"409", "422"} <= set(paths["/tasks"]["post"]["responses"])


def test_an_answer_the_document_does_not_list_is_found() -> None:
    # Given answers of which one has a status its route does not declare
    answers = {
        ("GET", "/api/tasks/abc", 200),
        ("GET", "/api/tasks/abc", 418),
        ("POST", "/api/tasks", 202),
        ("GET", "/api/openapi.json", 200),
    }

    # Then only that one is reported
    assert undocumented_answers(answers) == [
        "GET /api/tasks/abc answered 418, which the OpenAPI document does not list"
    ]
