"""Starting the host as a user does: the function list, and the worker's errors for a broken app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.apps import write_app
from tests.hosting import ROOT, start_host

pytestmark = pytest.mark.usefixtures("rabbitmq_url", "valkey_url", "azurite_connection_string")


def _start(app_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local", "start", "--no-services", "--app-dir", str(app_dir), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_function_list_names_routes_and_trigger_types() -> None:
    host = start_host()
    host.stop()
    output = "".join(host.output)
    assert f"\tsubmit_tasks: [POST] {host.base_url.replace('127.0.0.1', 'localhost')}/api/tasks\n" in output
    assert "\thealth: [GET] " in output
    assert "\tprocess_tasks: rabbitMQTrigger\n" in output
    assert "\tbacklog_snapshot: timerTrigger\n" in output
    assert host.process.returncode == 0


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import azure.functions as func\nraise RuntimeError('config is broken')\n",
            "RuntimeError: config is broken",
        ),
        ("import azure.functions as func\nimport no_such_module\n", "No module named 'no_such_module'"),
        ("def broken(:\n", "SyntaxError"),
        ("import azure.functions as func\n", "Could not find top level function app instances"),
        (
            "import azure.functions as func\na = func.FunctionApp()\nb = func.FunctionApp()\n",
            "More than one FunctionApp",
        ),
    ],
)
def test_broken_app_exits_non_zero_with_the_reason(tmp_path: Path, source: str, expected: str) -> None:
    result = _start(write_app(tmp_path / "app", source))
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Functions:" not in result.stdout  # never a silent empty function list


def test_import_error_shows_the_users_traceback(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "app", "import azure.functions as func\n\ndef helper():\n    return 1 / 0\n\nhelper()\n"
    )
    result = _start(app)
    assert result.returncode == 1
    assert 'function_app.py", line 4, in helper' in result.stderr
    assert "ZeroDivisionError" in result.stderr


def test_unresolved_setting_is_named(tmp_path: Path) -> None:
    app = write_app(
        tmp_path / "app",
        """
        import azure.functions as func
        app = func.FunctionApp()

        @app.generic_trigger(arg_name="m", type="rabbitMQTrigger", queue_name="%NOT_SET_ANYWHERE%",
                             connection_string_setting="RabbitMQConnection")
        def f(m: str) -> None: ...
        """,
    )
    result = _start(app)
    assert result.returncode == 1
    assert "'%NOT_SET_ANYWHERE%' does not resolve to a value" in result.stdout + result.stderr
