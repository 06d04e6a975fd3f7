"""A blueprint app under our host, as the worker's blueprint tests run theirs
(``tests/endtoend/test_blueprint_functions.py``): functions from a blueprint in a folder of its own,
registered beside the app's own, take the app's auth level."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hosting import RunningHost, start_host

APPS = Path(__file__).parent / "apps_worker"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    app_dir = tmp_path_factory.mktemp("blueprint") / "app"
    shutil.copytree(APPS / "blueprint", app_dir)
    (app_dir / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    running = start_host(app_dir, settings={"VALKEY_URL": "unused"})
    yield running
    running.stop()


def test_blueprint_functions_answer_without_a_key(host: RunningHost) -> None:
    """The app's http_auth_level (anonymous) applies to what its blueprint registers."""
    response = httpx.get(f"{host.base_url}/api/default_template", params={"name": "Ada"})
    assert (response.status_code, response.text) == (
        200,
        "Hello, Ada. This HTTP triggered function executed successfully.",
    )
    assert httpx.get(f"{host.base_url}/api/http_func").text == "GET from the blueprint"


def test_the_blueprint_reads_a_json_body(host: RunningHost) -> None:
    response = httpx.post(f"{host.base_url}/api/default_template", json={"name": "Grace"})
    assert response.text.startswith("Hello, Grace.")


def test_the_apps_own_function_runs_beside_the_blueprint(host: RunningHost) -> None:
    response = httpx.get(f"{host.base_url}/api/return_http")
    assert (response.status_code, response.text) == (200, "<h1>Hello World™</h1>")


def test_every_function_is_listed_at_start(host: RunningHost) -> None:
    listed = "".join(host.output)
    for name in ("default_template", "http_func", "return_http", "health"):
        assert f"{name}: " in listed
