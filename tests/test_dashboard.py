"""The dashboard, in a real browser: Debian's Chromium driven by Playwright against a running host.

The page is opened as an operator would (``?code=`` once), and what it shows is checked against what
the test did through the API: the totals, the task list and its filter, a failed task's detail with its
traceback, and the retry button. A screenshot of each view goes to ``test-output/dashboard/``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import valkey

from tests.conftest import private_valkey, require_service, skip_or_fail
from tests.hosting import ROOT, RunningHost, start_host

pytestmark = pytest.mark.services

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-output" / "dashboard"
#: Database 12 of the session's own Valkey: the totals on the page are this test's alone.
DATABASE = 12

#: A result that would run script if the page ever set it as markup.
MARKUP = "<img src=x onerror=alert(1)>"
#: Three waves, so the page is seen following them live; the second ``add`` answers from the cache.
WAVES = [
    [
        {"type": "echo", "payload": {"message": "hello"}},
        {"type": "add", "payload": {"x": 40, "y": 2}},
        {"type": "fail", "payload": {"permanent": True}},
    ],
    [
        {"type": "echo", "payload": {"message": MARKUP}},
        {"type": "add", "payload": {"x": 40, "y": 2}},
        {"type": "cpu", "payload": {"iterations": 1000}},
    ],
    [
        {"type": "sleep", "payload": {"seconds": 0.2}},
        {"type": "echo", "payload": {"message": [1, 2]}, "priority": "high"},
        {"type": "api_call", "payload": {"seconds": 0}, "priority": "low"},
    ],
]


@pytest.fixture(scope="module")
def host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    url = private_valkey(DATABASE)
    valkey.Valkey.from_url(url).flushdb()
    running = start_host(settings={"VALKEY_URL": url})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        skip_or_fail(f"{CHROMIUM} is missing; `make test` installs it (python -m local.services.browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed; `make deps` installs the dev extras")
        raise
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _submit_and_settle(http: httpx.Client, wave: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    answer = http.post("/api/tasks", json=wave)
    assert answer.status_code == 202, answer.text
    ids = [item["id"] for item in answer.json()]
    deadline = time.monotonic() + 15
    while True:
        found = {task_id: http.get(f"/api/tasks/{task_id}").json() for task_id in ids}
        if all(t["status"] in ("succeeded", "dead-lettered") for t in found.values()):
            return found
        assert time.monotonic() < deadline, f"tasks did not settle: {found}"
        time.sleep(0.1)


def test_the_page_is_a_locked_down_html_document(host: RunningHost) -> None:
    # Given the running app, when the page is asked for without and with the key
    anonymous = httpx.get(f"{host.base_url}/api/dashboard")
    with host.client() as http:
        page = http.get("/api/dashboard")
        document = http.get("/api/openapi.json").json()

    # Then only the key opens it, and it comes as HTML that runs nothing but its own inline code
    assert anonymous.status_code == 401
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)", policy)
    assert "unsafe-inline" not in policy
    assert "<script src" not in page.text
    assert "http://" not in page.text.replace("http://www.w3.org", ""), "nothing comes from elsewhere"
    # and the OpenAPI document lists it
    assert set(document["paths"]["/dashboard"]["get"]["responses"]) == {"200", "401"}


def test_the_dashboard_shows_and_acts_on_the_pipeline(host: RunningHost, browser: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: problems.append(f"unexpected {d.type}: {d.message}"))
    host_requests: list[str] = []
    page.on("request", lambda r: host_requests.append(f"{r.method} {r.url}"))
    expect = _expect()

    def shot(name: str) -> None:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    # Given the page open with the key, which then leaves the URL
    page.goto(f"{host.base_url}/api/dashboard?code={host.key}")
    assert "code=" not in page.url
    expect(page.locator("#readiness li.ready")).to_have_count(2)
    expect(page.locator("#total-accepted")).to_have_text("0")

    # When tasks of several types run, one of them failing for good
    tasks: dict[str, dict[str, Any]] = {}
    with host.client() as http:
        for wave in WAVES:
            tasks |= _submit_and_settle(http, wave)
            # Then the overview follows each wave without a reload
            expect(page.locator("#total-accepted")).to_have_text(str(len(tasks)))
    failed_id = next(i for i, t in tasks.items() if t["type"] == "fail")
    assert tasks[failed_id]["status"] == "dead-lettered"
    succeeded = len(tasks) - 1
    expect(page.locator("#total-processed")).to_have_text(str(succeeded))
    expect(page.locator("#cache-hits")).to_have_text("1")
    expect(page.locator("#type-rows tr")).to_have_count(len({t["type"] for t in tasks.values()}))
    expect(page.locator("#kpi-dead")).to_have_text("1", timeout=8000)
    expect(page.locator("#kpi-lanes")).to_have_text("high 0 · normal 0 · low 0", timeout=8000)
    expect(page.locator("#kpi-unfinished")).to_have_text("0")
    expect(page.locator("#kpi-limit")).to_contain_text("100,000")
    limited = page.locator("#type-rows tr", has_text="api_call")
    expect(limited).to_contain_text("10/s · 4 at once")
    expect(page.locator("#throughput-chart path.line.accepted")).to_have_count(1)
    shot("overview")
    page.emulate_media(color_scheme="dark")
    shot("dark-mode")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 375, "height": 812})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page runs off a phone's side"
    shot("phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    # When the task list is filtered by status, it shows those tasks only
    page.get_by_role("button", name="Tasks", exact=True).click()
    page.select_option("#filter-status", "succeeded")
    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(succeeded)
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"succeeded"}
    high_id = next(i for i, t in tasks.items() if t["type"] == "echo" and t.get("result") == [1, 2])
    expect(page.locator(f'#task-rows tr[data-id="{high_id}"] td.priority')).to_have_text("high")
    shot("task-list")
    # and a result that looks like markup stays text
    markup_id = next(i for i, t in tasks.items() if t.get("result") == MARKUP)
    page.locator(f'#task-rows tr[data-id="{markup_id}"]').click()
    expect(page.locator("#detail pre.result")).to_contain_text(MARKUP)
    assert page.locator("img").count() == 0
    page.keyboard.press("Escape")
    page.select_option("#filter-status", "dead-lettered")
    expect(rows).to_have_count(1)

    # and the failed task's detail shows its error and the handler's traceback
    rows.first.click()
    detail = page.locator("#detail")
    expect(detail.locator(".facts")).to_contain_text(failed_id)
    expect(detail.locator("pre.error")).to_contain_text("PermanentError")
    expect(detail.locator("pre.traceback")).to_contain_text("Traceback (most recent call last)")
    # with the payload it was submitted with, and why it was dead-lettered
    expect(detail.locator("#detail-payload")).to_contain_text('"permanent": true')
    expect(detail.locator(".facts")).to_contain_text("PermanentError")
    shot("detail")
    page.locator("#detail-close").click()

    # When the operator retries it from the dead letters
    page.get_by_role("button", name=re.compile("^Dead letters")).click()
    dead_row = page.locator(f'#dead-rows tr[data-id="{failed_id}"]')
    expect(dead_row).to_contain_text("PermanentError")
    shot("dead-letters")
    # (purging asks first, and "Cancel" purges nothing)
    page.get_by_role("button", name="Purge").click()
    expect(page.locator("#confirm")).to_contain_text("cannot be undone")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm")).to_be_hidden()
    before = tasks[failed_id]["finished_at"]
    with page.expect_response(lambda r: r.url.endswith(f"/api/tasks/{failed_id}/retry")) as retried:
        dead_row.get_by_role("button", name="Retry").click()
    assert retried.value.status == 202

    # Then it ran again from its first attempt and was dead-lettered again, as the page shows
    with host.client() as http:
        deadline = time.monotonic() + 10
        while (again := http.get(f"/api/tasks/{failed_id}").json())["finished_at"] == before:
            assert time.monotonic() < deadline, again
            time.sleep(0.1)
    assert (again["status"], again["attempts"]) == ("dead-lettered", 1)
    expect(dead_row.locator("time")).to_have_attribute("datetime", again["finished_at"])
    page.get_by_role("button", name="Overview").click()
    expect(page.locator("#total-redriven")).to_have_text("1")
    expect(page.locator("#total-dead_lettered")).to_have_text("2")
    expect(page.locator("#kpi-dead")).to_have_text("1", timeout=8000)
    context.close()
    assert not [r for r in host_requests if r.startswith("DELETE ")], "a purge was sent without confirmation"

    assert problems == []
    print("\nDashboard screenshots:\n" + "\n".join(f"  {path}" for path in shots))


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=6000)
    return expect
