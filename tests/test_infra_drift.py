"""No drift: every setting the deployed code reads is set by the Bicep, so a new one fails here first.

The deployed code (``function_app.py``, ``functions/``, ``shared/``) is read with ``ast``, not run:
settings read from the environment mapping (``env.get(X)``, ``env[X]``, ``os.getenv(X)``, helpers
called as ``_text(env, X, ...)``), with ``X`` a literal, a constant or an f-string of constants, and
settings named by bindings (``%X%`` in a binding value, ``connection="X"``). A read ``a or b`` is
satisfied by either. A name ``X`` is set when the Bicep sets ``X`` or an identity form ``X__...``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.pipeline.registry import MAX_DELAY_SECONDS
from tests.test_infra import LANE, app_settings, resources

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED = [
    ROOT / "function_app.py",
    *sorted((ROOT / "functions").rglob("*.py")),
    *sorted((ROOT / "shared").rglob("*.py")),
]
ENVIRONMENT_NAMES = {"env", "environ", "environment"}
BINDING_SETTING_KEYWORDS = {"connection", "connection_string_setting"}

#: Read by the code, and rightly not set by the Bicep.
NOT_SET_IN_AZURE = {
    "RabbitMQConnection": "the local profile's broker; the azure profile sends to Service Bus",
    "WEBSITE_SITE_NAME": "set by the platform on every instance (the app's name)",
    "WEBSITE_INSTANCE_ID": "set by the platform on every instance",
    "OTEL_SDK_DISABLED": "an off switch for telemetry; unset means on",
    "OTEL_BSP_MAX_QUEUE_SIZE": "optional tuning; the code's own default applies when unset",
    "OTEL_METRICS_EXEMPLAR_FILTER": "the SDK's setting; unset means no exemplars, which SigNoz does not keep",
    "TASKLANE_OTLP_LOG_LEVEL": "optional; unset exports warnings and errors, the default meant for Azure",
    "TASKLANE_TRACE_CONSOLE": "a local debugging aid (a console line per trace); off in Azure",
    "VALKEY_PASSWORD": "the password path of other hosts; in Azure the app signs in with an Entra token",
    "VALKEY_PASSWORD_SECRET_URI": "follows a Key Vault password on other hosts; Azure's cache has none",
    "SECRET_REFRESH_SECONDS": "how often that password is re-read; no password in Azure",
}
#: Read by the platform or an SDK rather than by our code, and needed in Azure all the same.
READ_BY_PLATFORM = {
    "AzureWebJobsStorage": "the Functions host's storage, in its identity form",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "the OTLP exporter: where SigNoz ingests",
    "OTEL_EXPORTER_OTLP_HEADERS": "the OTLP exporter: the SigNoz ingestion key",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "the host's OTLP exporter: http/protobuf, as the app's",
    "PYTHON_ENABLE_OPENTELEMETRY": "the Python worker: the host leaves the app's logs to the app",
    "OTEL_SERVICE_NAME": "the OpenTelemetry resource",
    "OTEL_RESOURCE_ATTRIBUTES": "the OpenTelemetry resource",
}


@dataclass(frozen=True)
class Read:
    """One read of settings: any one of ``names`` satisfies it."""

    names: tuple[str, ...]
    where: str


def constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def key(node: ast.AST, known: dict[str, str]) -> str | None:
    """The setting name an expression spells, when it is made of literals and known constants."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.Attribute):  # config.TASKS_QUEUE
        return known.get(node.attr)
    if isinstance(node, ast.JoinedStr):
        parts = [key(v.value if isinstance(v, ast.FormattedValue) else v, known) for v in node.values]
        return None if None in parts else "".join(p for p in parts if p is not None)
    return None


def _is_environment(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ENVIRONMENT_NAMES
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def read_names(node: ast.AST, known: dict[str, str]) -> list[str]:
    """The settings one expression reads directly (not through an ``or``)."""
    if isinstance(node, ast.Subscript) and _is_environment(node.value):
        found = key(node.slice, known)
        return [found] if found else []
    if not isinstance(node, ast.Call):
        return []
    function = node.func
    if isinstance(function, ast.Attribute) and function.attr == "get" and _is_environment(function.value):
        found = key(node.args[0], known) if node.args else None
        return [found] if found else []
    if isinstance(function, ast.Attribute) and function.attr == "getenv" and node.args:
        found = key(node.args[0], known)
        return [found] if found else []
    # A helper handed the environment and a setting name: _text(env, TASKS_QUEUE, "tasks").
    for argument, following in zip(node.args, node.args[1:], strict=False):
        if _is_environment(argument):
            found = key(following, known)
            return [found] if found else []
    return []


def reads(source: str, where: str, known: dict[str, str]) -> Iterator[Read]:
    """Every settings read in ``source``, an ``a or b`` chain counted as one read of either."""
    tree = ast.parse(source)
    known = {**known, **constants(tree)}
    inside_or: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            names = [name for value in node.values for name in read_names(value, known)]
            if names:
                inside_or.update(id(value) for value in node.values)
                yield Read(tuple(names), where)
    for node in ast.walk(tree):
        if id(node) in inside_or:
            continue
        for name in read_names(node, known):
            yield Read((name,), where)
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Call):
            # A binding value built from an expression: queue_name=lane_queue("%TASKS_QUEUE%", p).
            for argument in node.value.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    for setting in re.findall(r"%([^%\s]+)%", argument.value):
                        yield Read((setting,), f"{where} (binding)")
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if not isinstance(value, str):
                continue
            for setting in re.findall(r"%([^%\s]+)%", value):
                yield Read((setting,), f"{where} (binding)")
            if node.arg in BINDING_SETTING_KEYWORDS:
                yield Read((value,), f"{where} (binding)")


def deployed_reads() -> list[Read]:
    config = ast.parse((ROOT / "shared" / "pipeline" / "settings.py").read_text(encoding="utf-8"))
    known = constants(config)
    found: list[Read] = []
    for path in DEPLOYED:
        found += reads(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), known)
    return found


def is_set(name: str, settings: set[str]) -> bool:
    return name in settings or any(setting.startswith(f"{name}__") for setting in settings)


def unset(found: list[Read], settings: set[str]) -> list[Read]:
    """The reads no Bicep setting satisfies (nor a listed reason)."""
    return [
        read
        for read in found
        if not any(is_set(name, settings) or name in NOT_SET_IN_AZURE for name in read.names)
    ]


def test_every_setting_the_code_reads_is_set_by_the_bicep() -> None:
    missing = unset(deployed_reads(), set(app_settings()))
    assert not missing, (
        "set these in infra/modules/function-app.bicep (or say why not in this test):\n"
        + "\n".join(f"  {' or '.join(read.names)}  read in {read.where}" for read in missing)
    )


def test_every_reason_not_to_set_a_setting_is_about_one_the_code_still_reads() -> None:
    names = {name for read in deployed_reads() for name in read.names}
    assert sorted(set(NOT_SET_IN_AZURE) - names) == []


def test_settings_the_platform_reads_are_set_too() -> None:
    settings = set(app_settings())
    assert [name for name in READ_BY_PLATFORM if not is_set(name, settings)] == []


def test_the_scan_sees_the_settings_we_know_the_code_reads() -> None:
    # A scan that finds nothing would pass the drift test; it must see these.
    names = {name for read in deployed_reads() for name in read.names}
    expected = {
        "TASKLANE_PROFILE",
        "TASKS_QUEUE",
        # Read as a connection section (shared/platform/servicebus_connection.py), as the trigger does.
        "ServiceBusConnection",
        "VALKEY_URL",
        "VALKEY_CREDENTIAL",
        "VALKEY_PASSWORD",
        "VALKEY_PASSWORD_SECRET_URI",
        "TASKS_MAX_BACKLOG",
        "TASKS_MAX_BODY_BYTES",
        "TASKS_STATUS_TTL_SECONDS",
        "BACKLOG_SCHEDULE",
    }
    assert expected <= names


def test_the_scan_sees_the_settings_the_bindings_name() -> None:
    bound = {name for read in deployed_reads() if read.where.endswith("(binding)") for name in read.names}
    assert {"TASKS_QUEUE", "BACKLOG_SCHEDULE", "ServiceBusConnection", "RabbitMQConnection"} <= bound


def test_a_new_setting_without_bicep_is_reported_with_where_it_is_read() -> None:
    # Given code that reads a setting the Bicep does not set, four ways
    source = (
        "FLAG = 'TASKS_NEW_FLAG'\n"
        "def read(env):\n"
        "    a = env.get(FLAG)\n"
        "    b = os.environ['TASKS_NEW_LIMIT']\n"
        "    c = _positive(env, f'{FLAG}_SECONDS', 5)\n"
        "    d = env.get('TASKS_QUEUE') or env.get('TASKS_QUEUE_FALLBACK')\n"
        "@bp.timer_trigger(arg_name='t', schedule='%TASKS_NEW_SCHEDULE%')\n"
        "def timer(t): ...\n"
    )
    # When it is scanned against the Bicep's settings
    missing = unset(list(reads(source, "example.py", {})), set(app_settings()))
    # Then each new name is reported, and the fallback of a set one is not
    assert sorted(name for read in missing for name in read.names) == [
        "TASKS_NEW_FLAG",
        "TASKS_NEW_FLAG_SECONDS",
        "TASKS_NEW_LIMIT",
        "TASKS_NEW_SCHEDULE",
    ]


def test_host_storage_uses_the_identity_form_not_a_connection_string() -> None:
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["ServiceBusConnection__credential"] == "managedidentity"
    assert (
        settings["AzureWebJobsStorage__clientId"]
        == settings["ServiceBusConnection__clientId"]
        == "identityClientId"
    )


def test_a_task_delayed_as_long_as_the_app_allows_does_not_expire_in_its_queue() -> None:
    # A delayed task (or a next attempt after its backoff) waits in its lane as a scheduled message;
    # each lane's queue keeps messages longer than the longest delay the app accepts (7 days).
    queue = resources(LANE, "Microsoft.ServiceBus/namespaces/queues")["queue"]["properties"]
    match = re.fullmatch(r"P(\d+)D", queue["defaultMessageTimeToLive"])
    assert match, queue["defaultMessageTimeToLive"]
    assert int(match.group(1)) * 86400 > MAX_DELAY_SECONDS
    assert queue["deadLetteringOnMessageExpiration"] is True
