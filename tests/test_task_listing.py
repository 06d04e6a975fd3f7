"""Operators see and steer tasks: list them newest first by status and type a page at a time, cancel
one before it starts, list and purge the dead letters. Through a running host on RabbitMQ and Valkey."""

from __future__ import annotations

import time
from typing import Any

from tests.hosting import RunningHost
from tests.waiting import eventually


def call(host: RunningHost, method: str, path: str, **options: Any) -> Any:
    with host.client() as http:
        response = http.request(method, path, **options)
    return response


def submit(host: RunningHost, document: object) -> list[str]:
    response = call(host, "POST", "/api/tasks", json=document)
    assert response.status_code == 202, response.text
    found = response.json()
    return [item["id"] for item in (found if isinstance(found, list) else [found])]


def test_tasks_are_listed_newest_first_a_page_at_a_time(host: RunningHost) -> None:
    # Given 7 echo tasks submitted one after the other, all done
    ids = [submit(host, {"type": "echo", "payload": {"message": n}})[0] for n in range(7)]
    eventually(
        lambda: (
            len(call(host, "GET", "/api/tasks", params={"status": "succeeded", "limit": 200}).json()["tasks"])
            >= 7
        )
    )

    # When they are read in pages of 3
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"type": "echo", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = call(host, "GET", "/api/tasks", params=params).json()
        seen += [task["id"] for task in page["tasks"]]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            break

    # Then every task comes once, newest first, in pages of at most 3
    mine = [task_id for task_id in seen if task_id in ids]
    assert mine == list(reversed(ids))
    assert len(seen) == len(set(seen))
    assert pages >= 3


def test_a_bad_listing_query_is_a_400_naming_the_parameter(host: RunningHost) -> None:
    response = call(host, "GET", "/api/tasks", params={"status": "finished", "limit": 0})
    assert response.status_code == 400
    assert {d["field"] for d in response.json()["details"]} == {"status", "limit"}


def test_a_scheduled_task_can_be_cancelled_and_then_never_runs(host: RunningHost) -> None:
    # Given a task scheduled in two seconds
    (task_id,) = submit(host, {"type": "echo", "payload": {"message": "no"}, "delay": 2})

    # When it is cancelled
    response = call(host, "DELETE", f"/api/tasks/{task_id}")

    # Then it is cancelled, listed so, and its message, once due, does not run it
    assert response.status_code == 200
    assert response.json() == {"id": task_id, "status": "cancelled"}
    cancelled = call(host, "GET", "/api/tasks", params={"status": "cancelled"}).json()["tasks"]
    assert task_id in [task["id"] for task in cancelled]
    again = call(host, "DELETE", f"/api/tasks/{task_id}")
    assert (again.status_code, again.json()["status"]) == (409, "cancelled")
    assert call(host, "DELETE", "/api/tasks/no-such-task").status_code == 404
    time.sleep(3)  # past its due time: its message has come and gone
    final = call(host, "GET", f"/api/tasks/{task_id}").json()
    assert (final["status"], final["attempts"]) == ("cancelled", 0)


def test_dead_letters_are_listed_with_why_and_purged_with_a_count(host: RunningHost) -> None:
    # Given two tasks dead-lettered at once
    ids = submit(
        host, [{"type": "fail", "payload": {"reason": f"bad {n}", "permanent": True}} for n in range(2)]
    )
    eventually(lambda: {t["id"] for t in call(host, "GET", "/api/dead-letters").json()["tasks"]} >= set(ids))

    # When the dead letters are read, then purged
    listed = {t["id"]: t for t in call(host, "GET", "/api/dead-letters").json()["tasks"]}
    purged = call(host, "DELETE", "/api/dead-letters").json()

    # Then each shows its error, and the purge removed at least these two from the queue
    assert listed[ids[0]]["error"].startswith("PermanentError: bad")
    assert listed[ids[0]]["status"] == "dead-lettered"
    assert purged["purged"] >= 2
    assert call(host, "DELETE", "/api/dead-letters").json()["purged"] == 0
