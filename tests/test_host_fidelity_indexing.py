"""Indexing as the worker and the host do it: what fails the whole app, what puts one function in
error, the worker's own messages, the script it loads, and the return values it refuses."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from local.host.errors import AppLoadError, FunctionFailedError, FunctionMetadataError
from local.host.indexing import Binding, IndexedFunction, index, load_app
from local.host.invoker import Invoker
from tests.apps import forget_app, write_app
from tests.hosting import ROOT

HEADER = "import azure.functions as func\napp = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "app"
    yield folder
    forget_app(folder)


def _cause(app_dir: Path, source: str, environ: dict[str, str] | None = None) -> BaseException:
    """What the worker fails its metadata request with, for an app of ``source``."""
    write_app(app_dir, HEADER + source)
    forget_app(app_dir)
    with pytest.raises(AppLoadError) as caught:
        load_app(app_dir, environ or {})
    assert caught.value.__cause__ is not None
    return caught.value.__cause__


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            "@app.route(route='a')\ndef twice(req: func.HttpRequest) -> str: ...\n"
            "@app.function_name('twice')\n@app.route(route='b')\n"
            "def other(req: func.HttpRequest) -> str: ...\n",
            "ValueError: Function twice does not have a unique function name. Please change"
            " @app.function_name() or the function method name to be unique.",
        ),
        (
            "@app.function_name('lonely')\n@app.generic_output_binding(arg_name='out', type='queue')\n"
            "def lonely(out: func.Out[str]) -> None: ...\n",
            "ValueError: Function lonely does not have a trigger. A valid function must have one and only one"
            " trigger registered.",
        ),
        (
            "@app.schedule(schedule='0 * * * * *', arg_name='timer')\n@app.route(route='both')\n"
            "def both(req: func.HttpRequest, timer: func.TimerRequest) -> str: ...\n",
            "ValueError: A trigger was already registered to this function.",
        ),
        (
            "@app.route(route='extra')\ndef extra(req: func.HttpRequest, extra: str) -> str: ...\n",
            "FunctionLoadError: cannot load the extra function: the following parameters are declared in"
            " Python but not in function.json: {'extra'}",
        ),
        (
            "@app.route(route='missing')\n@app.generic_input_binding(arg_name='row', type='table')\n"
            "def missing(req: func.HttpRequest) -> str: ...\n",
            "FunctionLoadError: cannot load the missing function: the following parameters are declared in"
            " function.json but not in Python: {'row'}",
        ),
        (
            "@app.generic_trigger(arg_name='message', type='rabbitMQTrigger', queue_name='q')\n"
            "def typed(message: dict) -> None: ...\n",
            "FunctionLoadError: cannot load the typed function: 'message' binding type"
            ' "rabbitMQTrigger" and dataType "None" in function.json do not match the corresponding'
            ' function parameter\'s Python type annotation "dict"',
        ),
        (
            "@app.service_bus_queue_trigger(arg_name='messages', queue_name='q', connection='C',"
            " cardinality=func.Cardinality.MANY)\n"
            "def batch(messages: list[func.ServiceBusMessage]) -> None: ...\n",
            "FunctionLoadError: cannot load the batch function: binding messages has invalid non-type"
            " annotation list[azure.functions.",
        ),
        (
            "@app.route(route='raw')\ndef raw(req: func.HttpRequest) -> bytes: ...\n",
            'FunctionLoadError: cannot load the raw function: Python return annotation "bytes" does not match'
            ' binding type "http"',
        ),
        (
            "@app.route(route='ctx')\ndef ctx(req: func.HttpRequest, context: str) -> str: ...\n",
            'FunctionLoadError: cannot load the ctx function: the "context" parameter is expected to be of'
            " type azure.functions.Context, got <class 'str'>",
        ),
        (
            "@app.route(route='out', binding_arg_name='res')\n"
            "def out(req: func.HttpRequest, res: str) -> None: ...\n",
            'FunctionLoadError: cannot load the out function: binding res is declared to have the "out"'
            " direction, but its annotation in Python is not a subclass of azure.functions.Out",
        ),
    ],
)
def test_the_worker_fails_the_whole_app_with_its_message(app_dir: Path, source: str, shown: str) -> None:
    cause = _cause(
        app_dir, "@app.route(route='fine')\ndef fine(req: func.HttpRequest) -> str: ...\n" + source
    )
    assert f"{type(cause).__name__}: {cause}".startswith(shown)


def test_a_missing_module_is_explained_as_the_worker_explains_it(app_dir: Path) -> None:
    cause = _cause(app_dir, "import no_such_module_here\n")
    assert isinstance(cause, ModuleNotFoundError)
    assert str(cause).startswith(
        "No module named 'no_such_module_here'. Cannot find module. Please check the requirements.txt file"
        " for the missing module. For more info, please refer the troubleshooting guide:"
        " https://aka.ms/functions-modulenotfound. Current sys.path: ["
    )


def test_the_script_named_by_the_setting_is_loaded(app_dir: Path) -> None:
    write_app(app_dir, "raise RuntimeError('function_app.py is not the script')\n")
    (app_dir / "main_app.py").write_text(HEADER + "@app.route(route='x')\ndef from_main(req): ...\n")
    forget_app(app_dir)
    try:
        [function] = load_app(app_dir, {"PYTHON_SCRIPT_FILE_NAME": "main_app.py"})
    finally:
        sys.modules.pop("main_app", None)
    assert function.get_function_name() == "from_main"


@pytest.mark.parametrize("name", ["main", "app.txt", "-app.py", "sub/app.py"])
def test_a_script_name_the_worker_refuses_fails_indexing(app_dir: Path, name: str) -> None:
    write_app(app_dir, HEADER)
    with pytest.raises(AppLoadError) as caught:
        load_app(app_dir, {"PYTHON_SCRIPT_FILE_NAME": name})
    assert f"{type(caught.value.__cause__).__name__}: {caught.value.__cause__}" == (
        f"InvalidFileNameError: Invalid file name: {name}"
    )


# --- what the host finds in error, function by function ------------------------------------------


def _index(app: func.FunctionApp, environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    indexed, errors = index(app.get_functions(), Path("."), environ or {})
    return [fn.name for fn in indexed], {e.function_name: e.reason for e in errors}


def test_a_function_in_error_is_left_out_and_the_others_run() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="fine")
    def fine(req: func.HttpRequest) -> str: ...

    @app.route(route="snake", trigger_arg_name="the_request")
    def snake(the_request: func.HttpRequest) -> str: ...

    @app.blob_trigger(arg_name="blob", path="c/{name}", connection="Storage")
    def blobby(blob: func.InputStream) -> None: ...

    names, errors = _index(app)
    assert names == ["fine"]
    assert (
        errors["snake"]
        == "The binding name the_request is invalid. Please assign a valid name to the binding."
    )
    assert errors["blobby"].startswith(
        "The binding type(s) 'blobTrigger' are not supported by the local host"
    )


def test_an_unresolved_setting_fails_that_function_alone() -> None:
    app = func.FunctionApp()

    @app.generic_trigger(arg_name="message", type="rabbitMQTrigger", queue_name="%NOT_SET%")
    def take(message: str) -> None: ...

    names, errors = _index(app)
    assert names == []
    assert errors["take"].startswith("'%NOT_SET%' does not resolve to a value")


def test_a_function_in_error_is_reported_as_the_host_does(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        FunctionMetadataError("f", "No trigger binding specified.").report(logging.getLogger("t"))
        FunctionMetadataError.__mro__[1]("g", "'%X%' does not resolve to a value").report(
            logging.getLogger("t")
        )
    assert caplog.messages == [
        "The 'f' function is in error: No trigger binding specified.",
        "Error indexing method 'Functions.g'\n'%X%' does not resolve to a value.",
        "Function 'Functions.g' failed indexing and will be disabled.",
    ]


# --- return values, timer and generic bindings at invocation -------------------------------------


def _function(handler: Any, *bindings: Binding) -> IndexedFunction:
    return IndexedFunction(handler.__name__, bindings[0], bindings, handler, Path("."))


TIMER = Binding("timer", "timerTrigger", "IN", {"schedule": "*/5 * * * * *"})
RABBIT = Binding("message", "rabbitMQTrigger", "IN", {"queueName": "q"})


async def test_a_timer_function_that_returns_a_value_fails(caplog: pytest.LogCaptureFixture) -> None:
    def returns(timer: func.TimerRequest) -> str:
        return "hi!"

    with pytest.raises(FunctionFailedError):
        await Invoker().invoke(_function(returns, TIMER), {"timer": TimerRequest(past_due=False)})
    assert (
        "Exception: RuntimeError: function 'returns' without a $return bindingreturned a non-None value"
        in caplog.text
    )


async def test_a_generic_binding_takes_the_return_value() -> None:
    # Any binding the library has no converter for is generic, and generic ones take a return value
    def returns(timer: func.TimerRequest, row: str) -> list[int]:
        return [1, 2, 3]

    fn = _function(returns, TIMER, Binding("row", "table", "IN", {}))
    result = await Invoker().invoke(fn, {"timer": TimerRequest(past_due=False), "row": "{}"})
    assert result.value == [1, 2, 3]
    assert (await Invoker().invoke(_function(lambda message: 12, RABBIT), {"message": "m"})).value == 12


async def test_past_due_reaches_an_out_binding_as_the_workers_timer_app_has_it() -> None:
    def return_pastdue(timer: func.TimerRequest, pastdue: func.Out[str]) -> None:
        pastdue.set(str(timer.past_due))

    fn = _function(return_pastdue, TIMER, Binding("pastdue", "http", "OUT", {}))
    for due in (True, False):
        result = await Invoker().invoke(fn, {"timer": TimerRequest(past_due=due)})
        assert result.outputs == {"pastdue": str(due)}


async def test_a_sync_timer_may_run_an_event_loop_of_its_own(caplog: pytest.LogCaptureFixture) -> None:
    async def try_log() -> None:
        logging.getLogger("my function").info("try_log")

    def user_event_loop_timer(timer: func.TimerRequest) -> None:
        loop = asyncio.SelectorEventLoop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(try_log())
        loop.close()

    with caplog.at_level(logging.INFO):
        await Invoker().invoke(
            _function(user_event_loop_timer, TIMER), {"timer": TimerRequest(past_due=False)}
        )
    assert "try_log" in caplog.messages


# --- the worker's failure at start, as the console shows it --------------------------------------


def test_a_refused_app_stops_the_host_with_the_workers_report(app_dir: Path) -> None:
    write_app(
        app_dir,
        HEADER + "@app.route(route='extra')\ndef extra(req: func.HttpRequest, extra: str) -> str: ...\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "local", "start", "--no-services", "--app-dir", str(app_dir), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = [line.partition("Z] ")[2] or line for line in result.stderr.splitlines()]
    start = lines.index("Worker failed to index functions")
    assert lines[start + 1 : start + 3] == [
        "Result: Failure",
        "Exception: FunctionLoadError: cannot load the extra function: the following parameters are"
        " declared in Python but not in function.json: {'extra'}",
    ]
    assert lines[start + 3].startswith("Stack:   File ")
    assert any(line.startswith("No job functions found. Try making your job classes") for line in lines)
    assert lines[-1].startswith("Error: ")
    assert "Functions:" not in result.stdout
