"""Local settings load as Core Tools loads them, and %Setting% resolves in bindings."""

import json
from pathlib import Path

import pytest

from local.host.errors import HostError, SettingNotFoundError
from local.host.settings import (
    HostConfig,
    apply_to_environment,
    parse_flag,
    parse_timespan,
    read_local_settings,
    resolve_binding,
    resolve_expressions,
)


def _write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


def test_values_never_override_the_environment(tmp_path: Path) -> None:
    # Given a variable already exported and the same name in local.settings.json
    _write(tmp_path / "local.settings.json", {"Values": {"TASKS_QUEUE": "from-file", "ONLY_FILE": "x"}})
    environ = {"TASKS_QUEUE": "from-shell"}
    # When the settings are applied
    kept = apply_to_environment(read_local_settings(tmp_path), environ)
    # Then the shell wins and the rest is filled in
    assert environ == {"TASKS_QUEUE": "from-shell", "ONLY_FILE": "x"}
    assert kept == ["TASKS_QUEUE"]


def test_local_settings_file_wins_over_the_emulator_profile(tmp_path: Path) -> None:
    _write(tmp_path / "local.settings.emulator.json", {"Values": {"A": "profile"}})
    assert read_local_settings(tmp_path).values == {"A": "profile"}
    _write(tmp_path / "local.settings.json", {"Values": {"A": "mine"}, "Host": {"LocalHttpPort": 7072}})
    loaded = read_local_settings(tmp_path)
    assert loaded.values == {"A": "mine"}
    assert loaded.local_http_port == 7072


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not valid JSON"),
        ([], "JSON object"),
        ({"IsEncrypted": True, "Values": {}}, "encrypted"),
        ({"Values": ["a"]}, "'Values' must be an object"),
    ],
)
def test_bad_local_settings_name_the_problem(tmp_path: Path, document: object, message: str) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    with pytest.raises(HostError, match=message):
        read_local_settings(tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("%TASKS_QUEUE%", "tasks"),
        ("prefix-%TASKS_QUEUE%-suffix", "prefix-tasks-suffix"),
        ("%A%/%B%", "1/2"),
        ("no expressions", "no expressions"),
        ("50%", "50%"),
    ],
)
def test_expressions_resolve_from_settings(value: str, expected: str) -> None:
    assert resolve_expressions(value, {"TASKS_QUEUE": "tasks", "A": "1", "B": "2"}) == expected


def test_missing_setting_names_itself() -> None:
    with pytest.raises(SettingNotFoundError, match="'%NOPE%' does not resolve"):
        resolve_expressions("%NOPE%", {})


def test_binding_resolution_leaves_other_types_alone() -> None:
    binding = {"type": "rabbitMQTrigger", "queueName": "%Q%", "runOnStartup": True, "methods": ["GET"]}
    assert resolve_binding(binding, {"Q": "tasks"}) == {
        "type": "rabbitMQTrigger",
        "queueName": "tasks",
        "runOnStartup": True,
        "methods": ["GET"],
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:05:00", 300.0), ("1.00:00:00", 86400.0), ("00:00:01.5", 1.5), ("10:00:00", 36000.0)],
)
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


@pytest.mark.parametrize(
    ("raw", "default", "expected"),
    [
        (None, True, True),  # not set: the default
        (None, False, False),
        (False, True, False),
        (True, False, True),
        ("false", True, False),  # a %Setting% resolves to text
        (" True ", False, True),
    ],
)
def test_flags_read_json_booleans_and_their_text(raw: object, default: bool, expected: bool) -> None:
    assert parse_flag(raw, default, "useMonitor") is expected


@pytest.mark.parametrize("raw", ["", "yes", "1", 1, 0])
def test_a_flag_that_is_not_true_or_false_is_an_error_naming_it(raw: object) -> None:
    with pytest.raises(HostError, match=r"useMonitor=.*expected true or false"):
        parse_flag(raw, True, "useMonitor")


def test_host_json_defaults_and_values(tmp_path: Path) -> None:
    assert HostConfig().route_prefix == "api"
    _write(
        tmp_path / "host.json",
        {
            "version": "2.0",
            "functionTimeout": "00:00:30",
            "extensions": {"http": {"routePrefix": ""}, "rabbitMQ": {"prefetchCount": 5}},
        },
    )
    config = HostConfig.load(tmp_path)
    assert config.route_prefix == ""
    assert config.function_timeout_seconds == 30
    assert config.extension("rabbitMQ") == {"prefetchCount": 5}
    assert config.extension("serviceBus") == {}


def test_app_settings_override_host_json_values_as_the_functions_host_reads_them(tmp_path: Path) -> None:
    # AzureFunctionsJobHost__<path>, path parts joined by "__", keys matched whatever their case
    _write(
        tmp_path / "host.json",
        {
            "version": "2.0",
            "logging": {"logLevel": {"Function": "Information"}},
            "functionTimeout": "00:01:00",
        },
    )
    environ = {
        "AzureFunctionsJobHost__logging__logLevel__function": "Warning",
        "AZUREFUNCTIONSJOBHOST__functionTimeout": "00:00:05",
        "AzureFunctionsJobHost__extensions__rabbitMQ__prefetchCount": "7",
        "UNRELATED": "x",
    }
    config = HostConfig.load(tmp_path, environ)
    assert config.document["logging"]["logLevel"] == {"Function": "Warning"}
    assert config.function_timeout_seconds == 5
    assert config.extension("rabbitMQ") == {"prefetchCount": "7"}
