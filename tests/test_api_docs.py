"""The OpenAPI document and its reference page: what the document says of each answer, the absolute
server it names, and the page in a real browser (Debian's Chromium driven by Playwright).

What the API answers is checked against the document's own schemas, so a schema that drifts from the
responses fails here. A screenshot of the page goes to ``test-output/docs/``.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest

import function_app  # noqa: F401  (declares the routes)
from functions import openapi
from functions.http import DECLARED
from shared import tasks
from tests.hosting import ROOT, RunningHost
from tests.test_dashboard import _expect, browser  # noqa: F401  (the browser fixture)

SCREENSHOTS = ROOT / "test-output" / "docs"
TIMESTAMPS = ("submitted_at", "started_at", "finished_at", "retry_at", "due_at")
DOCUMENT = openapi.document(tasks.registry, DECLARED)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def _conforms(body: Any, schema: dict[str, Any]) -> None:
    """Raise unless ``body`` is valid against ``schema``, its references resolved in the document."""
    validator = jsonschema.Draft202012Validator(
        schema | {"components": DOCUMENT["components"]}, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(body)


def _schema(path: str, method: str, status: int) -> dict[str, Any]:
    content = DOCUMENT["paths"][path][method]["responses"][str(status)]["content"]
    return content["application/json"]["schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("url", "headers", "expected"),
    [
        ("http://127.0.0.1:7071/api/openapi.json", {}, "http://127.0.0.1:7071/api"),
        ("http://10.0.0.4/api/openapi.json", {"x-forwarded-proto": "https"}, "https://10.0.0.4/api"),
        (
            "http://10.0.0.4:80/api/openapi.json",
            {"x-forwarded-proto": "https", "x-forwarded-host": "tasks.example.com"},
            "https://tasks.example.com/api",
        ),
        # a chain of front ends: the outermost, which the client reached, comes first
        (
            "http://10.0.0.4/api/openapi.json",
            {"x-forwarded-proto": "https, http", "x-forwarded-host": "a.example.com:8443, b.internal"},
            "https://a.example.com:8443/api",
        ),
        # a route prefix other than /api
        ("https://app.azurewebsites.net/v1/openapi.json", {}, "https://app.azurewebsites.net/v1"),
        # what is not a scheme or a host is not believed
        (
            "http://127.0.0.1:7071/api/openapi.json",
            {"x-forwarded-proto": "javascript", "x-forwarded-host": "evil.example/path?x="},
            "http://127.0.0.1:7071/api",
        ),
    ],
)
def test_the_server_is_the_address_the_client_reached(
    url: str, headers: dict[str, str], expected: str
) -> None:
    assert openapi.server_url(url, headers) == expected


def test_every_answer_has_a_schema_or_says_it_has_no_body() -> None:
    for method, path, operation in _operations(DOCUMENT):
        for status, answer in operation["responses"].items():
            where = f"{method} {path} {status}"
            if status == "401":
                assert "content" not in answer, f"{where}: the host's 401 has no body"
                continue
            assert answer.get("content"), f"{where} neither has a body nor says it has none"
            for media, content in answer["content"].items():
                assert "schema" in content, f"{where} {media} has no schema"
                assert content["schema"] != {"type": "object"}, f"{where}: a bare object says nothing"


def test_pages_and_metrics_are_documented_as_what_they_are() -> None:
    media = {
        path: set(DOCUMENT["paths"][path]["get"]["responses"]["200"]["content"])
        for path in ("/dashboard", "/docs", "/metrics", "/stats")
    }
    assert media == {
        "/dashboard": {"text/html"},
        "/docs": {"text/html"},
        "/metrics": {"text/plain; version=0.0.4"},
        "/stats": {"application/json"},
    }


def test_every_timestamp_string_is_a_date_time() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    found = {
        (name, field): schema.get("format")
        for name, component in schemas.items()
        for field, schema in component.get("properties", {}).items()
        if field in TIMESTAMPS and "string" in schema.get("type", ())
    }
    assert ("TaskStatus", "retry_at") in found
    assert ("Queued", "due_at") in found
    assert set(found.values()) == {"date-time"}, found


def test_answers_match_their_schemas(host: RunningHost) -> None:
    # Given a task that ran and one scheduled for later
    with host.client() as http:
        ran = http.post("/api/tasks", json={"type": "add", "payload": {"x": 1, "y": 2}}).json()
        later = http.post("/api/tasks", json={"type": "echo", "payload": {"message": 1}, "delay": 600})
        assert later.status_code == 202
        for _ in range(100):
            task = http.get(f"/api/tasks/{ran['id']}").json()
            if task["status"] == "succeeded":
                break
        # When the API is read
        answers = {
            ("/stats", 200): http.get("/api/stats"),
            ("/ready", 200): http.get("/api/ready"),
            ("/health", 200): httpx.get(f"{host.base_url}/api/health"),
            ("/tasks/{id}", 200): http.get(f"/api/tasks/{ran['id']}"),
            ("/tasks", 200): http.get("/api/tasks"),
            ("/openapi.json", 200): http.get("/api/openapi.json"),
        }
        scheduled = http.get(f"/api/tasks/{later.json()['id']}").json()

    # Then each answer is what its schema says, timestamps included
    assert task["status"] == "succeeded", task
    for (path, status), response in answers.items():
        assert response.status_code == status, (path, response.text)
        _conforms(response.json(), _schema(path, "get", status))
    _conforms(later.json(), _schema("/tasks", "post", 202))
    _conforms(scheduled, _schema("/tasks/{id}", "get", 200))
    stats = answers[("/stats", 200)].json()
    assert stats["totals"]["accepted"] >= 2
    with pytest.raises(jsonschema.ValidationError):  # and the schema is one that can fail
        _conforms(stats | {"totals": {"accepted": "many"}}, _schema("/stats", "get", 200))


def test_the_served_document_names_the_address_it_was_reached_at(host: RunningHost) -> None:
    # When the document is read directly, and through a front end that says what the client reached
    with host.client() as http:
        direct = http.get("/api/openapi.json").json()
        fronted = http.get(
            "/api/openapi.json",
            headers={"x-forwarded-proto": "https", "x-forwarded-host": "tasks.example.com"},
        ).json()

    # Then each names an absolute server a generated client can use as is, and nothing else differs
    assert direct["servers"] == [{"url": f"{host.base_url}/api"}]
    assert fronted["servers"] == [{"url": "https://tasks.example.com/api"}]
    assert direct | {"servers": None} == fronted | {"servers": None}


def test_the_docs_page_is_a_locked_down_html_document(host: RunningHost) -> None:
    # When the page is asked for without a key
    page = httpx.get(f"{host.base_url}/api/docs")

    # Then it comes (it holds nothing secret) as HTML that runs nothing but its own inline code
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-content-type-options"] == "nosniff"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)", policy)
    assert "unsafe-inline" not in policy
    assert "<script src" not in page.text
    assert '<link rel="stylesheet"' not in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", ""), "nothing comes from elsewhere"
    assert host.key not in page.text
    # while the document it reads needs the key
    assert httpx.get(f"{host.base_url}/api/openapi.json").status_code == 401


def test_the_docs_page_lists_every_operation_and_tries_one(host: RunningHost, browser: Any) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    expect = _expect()
    with host.client() as http:
        document = http.get("/api/openapi.json").json()

    # Given the page opened without a key, which asks for one and shows nothing yet
    page.goto(f"{host.base_url}/api/docs")
    expect(page.locator("#banner")).to_contain_text("function key")
    assert page.locator("details.op").count() == 0
    problems.clear()  # the browser logs the 401 it was answered; that one is expected

    # When the reader gives the key
    page.fill("#key", host.key)
    page.get_by_role("button", name="Use key").click()

    # Then every operation of the document is listed, with its summary and responses
    operations = page.locator("details.op")
    expect(operations).to_have_count(len(_operations(document)))
    listed = operations.evaluate_all("ops => ops.map(o => [o.dataset.method, o.dataset.path])")
    assert sorted(map(tuple, listed)) == sorted((m, p) for m, p, _ in _operations(document))
    stats = page.locator('details.op[data-method="GET"][data-path="/stats"]')
    stats.locator("summary").click()
    expect(stats.locator(".responses tr[data-status]")).to_have_count(
        len(document["paths"]["/stats"]["get"]["responses"])
    )
    # (its schema a link to the component, which the page lays out with every field)
    stats.get_by_role("link", name="Stats").click()
    expect(page.locator("#schema-Stats")).to_contain_text("latency_seconds")
    expect(page.locator("#schema-TaskStatus")).to_contain_text("date-time")
    submit = page.locator('details.op[data-method="POST"][data-path="/tasks"]')
    submit.locator("summary").click()
    expect(submit).to_contain_text("Idempotency-Key")
    expect(submit.locator("textarea")).not_to_be_empty()
    expect(page.locator("#server")).to_have_text(f"{host.base_url}/api")

    # When the reader tries GET /api/health
    health = page.locator('details.op[data-method="GET"][data-path="/health"]')
    health.locator("summary").click()
    health.get_by_role("button", name="Send").click()

    # Then the page shows its status and body
    expect(health.locator(".outcome .status")).to_have_text(re.compile(r"^200\b"))
    expect(health.locator(".outcome pre.response-body")).to_contain_text('"status": "ok"')
    # and a call that needs the key is sent with it
    stats.get_by_role("button", name="Send").click()
    expect(stats.locator(".outcome .status")).to_have_text(re.compile(r"^200\b"))
    expect(stats.locator(".outcome pre.response-body")).to_contain_text('"totals"')
    shots = {"reference": False, "reference-full": True}
    page.evaluate("window.scrollTo(0, 0)")
    for name, full_page in shots.items():
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(SCREENSHOTS / "reference-dark.png"))
    context.close()

    assert problems == []
    print(f"\nDocs screenshots in {SCREENSHOTS}: reference.png, reference-full.png, reference-dark.png")
