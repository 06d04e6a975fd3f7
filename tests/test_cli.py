"""``python -m local tasks ...`` and ``stats`` against a running host, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import valkey

from local.cli.tables import age, clip, duration, table
from shared.platform.rabbitmq_topology import delete_queue_topology
from tests.conftest import RABBITMQ_URL, require_service
from tests.hosting import ROOT, RunningHost, free_port, start_host
from tests.private_valkey import private_valkey_url
from tests.waiting import eventually


def cli(*args: str, key: str | None = None, app_dir: Path = ROOT) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FUNCTIONS_")}
    if key is not None:
        environ["FUNCTIONS_HOST_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "local", *args, "--app-dir", str(app_dir)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


#: This module's database of the session's own Valkey, so the counts in stats are its tasks alone.
DATABASE = 11


@pytest.fixture(scope="module")
def host() -> Iterator[RunningHost]:
    require_service("rabbitmq")
    require_service("valkey")
    url = private_valkey_url(DATABASE)
    valkey.Valkey.from_url(url).flushdb()
    running = start_host(settings={"VALKEY_URL": url})
    yield running
    running.stop()
    asyncio.run(delete_queue_topology(RABBITMQ_URL, running.queue))


@pytest.fixture(scope="module")
def tasks(host: RunningHost) -> dict[str, str]:
    """Three tasks, done: two that succeed and one dead-lettered at once; their ids by name."""
    with host.client() as http:
        submitted = http.post(
            "/api/tasks",
            json=[
                {"type": "add", "payload": {"x": 40, "y": 2}},
                {"type": "echo", "payload": {"message": "hi"}, "priority": "high"},
                {"type": "fail", "payload": {"permanent": True}},
            ],
        ).json()
        ids = dict(zip(("add", "echo", "fail"), (item["id"] for item in submitted), strict=True))
        eventually(
            lambda: (
                http.get(f"/api/tasks/{ids['fail']}").json()["status"] == "dead-lettered"
                and http.get(f"/api/tasks/{ids['echo']}").json()["status"] == "succeeded"
                and http.get(f"/api/tasks/{ids['add']}").json()["status"] == "succeeded"
            ),
            what="the three tasks done",
        )
    return ids


def test_list_shows_each_task_in_an_aligned_table(host: RunningHost, tasks: dict[str, str]) -> None:
    # When the operator lists the tasks
    result = cli("tasks", "list", "--url", host.base_url, key=host.key)

    # Then each id is a row with its type and status, under one header, columns lined up
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "AGE", "TOOK", "ERROR"]
    for name, status in (("add", "succeeded"), ("echo", "succeeded"), ("fail", "dead-lettered")):
        row = next(line for line in lines if line.startswith(tasks[name]))
        assert row.split()[1:3] == [name, status]
        assert row.index(status) == lines[0].index("STATUS")
    assert "3 tasks, newest first" in result.stdout


def test_list_filters_by_status_and_prints_json_for_scripts(host: RunningHost, tasks: dict[str, str]) -> None:
    result = cli("tasks", "list", "--status", "dead-lettered", "--json", "--url", host.base_url, key=host.key)
    assert result.returncode == 0, result.stderr
    assert [task["id"] for task in json.loads(result.stdout)["tasks"]] == [tasks["fail"]]


def test_show_prints_a_tasks_result(host: RunningHost, tasks: dict[str, str]) -> None:
    result = cli("tasks", "show", tasks["add"], "--url", host.base_url, key=host.key)
    assert result.returncode == 0, result.stderr
    assert "status:     succeeded" in result.stdout
    assert "result:     42.0" in result.stdout


def test_stats_counts_what_was_processed(host: RunningHost, tasks: dict[str, str]) -> None:
    result = cli("stats", "--url", host.base_url, key=host.key)
    assert result.returncode == 0, result.stderr
    assert "3 accepted, 2 processed, 1 failed, 1 dead-lettered" in result.stdout
    per_type = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert per_type["add"] == ["1", "1", "0", "0", "-"]
    assert per_type["fail"][0] == "1"
    assert "admission:   0 unfinished of 100000 admitted at most" in result.stdout
    assert "lanes:" in result.stdout


def test_show_and_list_name_a_tasks_priority(host: RunningHost, tasks: dict[str, str]) -> None:
    shown = cli("tasks", "show", tasks["echo"], "--url", host.base_url, key=host.key)
    assert "priority:   high" in shown.stdout
    listed = cli("tasks", "list", "--url", host.base_url, key=host.key).stdout.splitlines()
    row = next(line for line in listed if line.startswith(tasks["echo"]))
    assert row.split()[3] == "high"


def test_retry_then_redrive_then_purge_the_dead_letter(host: RunningHost, tasks: dict[str, str]) -> None:
    retried = cli("tasks", "retry", tasks["fail"], "--url", host.base_url, key=host.key)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"Task {tasks['fail']} sent again: queued"
    with host.client() as http:
        eventually(lambda: http.get(f"/api/tasks/{tasks['fail']}").json()["attempts"] == 1)
        eventually(lambda: http.get(f"/api/tasks/{tasks['fail']}").json()["status"] == "dead-lettered")

    redriven = cli("tasks", "redrive", "--type", "fail", "--url", host.base_url, key=host.key)
    assert redriven.stdout.strip() == "Sent 1 dead-lettered task(s) of type fail again"
    with host.client() as http:
        eventually(lambda: http.get(f"/api/tasks/{tasks['fail']}").json()["status"] == "dead-lettered")

    refused = cli("tasks", "purge", "--url", host.base_url, key=host.key)
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr
    purged = cli("tasks", "purge", "--yes", "--url", host.base_url, key=host.key)
    assert purged.stdout.strip() == "Purged 1 dead letter(s)"


def test_an_unknown_task_is_one_clear_line_and_exit_1(host: RunningHost, tasks: dict[str, str]) -> None:
    result = cli("tasks", "show", "no-such-id", "--url", host.base_url, key=host.key)
    assert result.returncode == 1
    assert result.stderr == "Error: no task no-such-id (404)\n"
    assert result.stdout == ""


def test_cancelling_a_finished_task_names_its_status(host: RunningHost, tasks: dict[str, str]) -> None:
    result = cli("tasks", "cancel", tasks["echo"], "--url", host.base_url, key=host.key)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: task {tasks['echo']} is succeeded: only a queued or scheduled")
    assert result.stderr.rstrip().endswith("(409)")


def test_a_wrong_key_says_so(host: RunningHost) -> None:
    result = cli("stats", "--url", host.base_url, key="wrong")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: the app at {host.base_url} refused the key (401)")


def test_no_app_listening_is_one_line_naming_the_address(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("tasks", "list", "--url", url, key="any", app_dir=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: nothing answers at {url} (connection refused): "
        "start the app with `python -m local start`, or pass --url\n"
    )


def test_the_address_and_key_come_from_the_apps_settings(tmp_path: Path) -> None:
    # Given an app folder whose local settings name a port and a key, and nothing listening there
    port = free_port()
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"FUNCTIONS_HOST_KEY": "k"}, "Host": {"LocalHttpPort": port}})
    )
    result = cli("stats", app_dir=tmp_path)
    assert f"nothing answers at http://localhost:{port} " in result.stderr


def test_usage_errors_exit_2() -> None:
    assert cli("tasks", "list", "--limit", "0").returncode == 2
    assert cli("tasks", "show").returncode == 2


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "shown"), [(0, "0s"), (59.9, "59s"), (61, "1m"), (7200, "2h"), (200000, "2d")]
)
def test_age_is_the_largest_whole_unit(seconds_ago: float, shown: str) -> None:
    assert age((NOW - timedelta(seconds=seconds_ago)).isoformat(), NOW) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0004, "400µs"), (0.00123, "1.2ms"), (0.0123, "12ms"), (4.2, "4.20s"), (185, "3m05s"), (None, None)],
)
def test_durations_keep_about_three_figures(seconds: float | None, shown: str | None) -> None:
    assert duration(seconds) == shown


def test_tables_align_columns_and_print_missing_values_as_a_dash() -> None:
    assert table(("NAME", "N"), [("a", 10), ("long name", None)], right=("N",)) == (
        "NAME        N\na          10\nlong name   -"
    )
    assert clip("a\nlong   error", 8) == "a long …"
