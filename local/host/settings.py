"""App settings and ``host.json`` as Core Tools loads them.

``local.settings.json`` ``Values`` become environment variables but never override a variable that
is already set; ``%Name%`` in a binding value resolves against those settings.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.host.errors import HostError, SettingNotFoundError

log = logging.getLogger(__name__)

LOCAL_SETTINGS_FILE = "local.settings.json"
#: The committed emulator profile, used when no ``local.settings.json`` exists.
EMULATOR_SETTINGS_FILE = "local.settings.emulator.json"
_EXPRESSION = re.compile(r"%([^%\s]+)%")


@dataclass(frozen=True)
class LocalSettings:
    """What ``local.settings.json`` holds; ``values`` are the app settings."""

    values: Mapping[str, str] = field(default_factory=dict)
    connection_strings: Mapping[str, str] = field(default_factory=dict)
    local_http_port: int | None = None
    source: Path | None = None


def read_local_settings(app_dir: Path) -> LocalSettings:
    """Read ``local.settings.json`` (or the committed emulator profile) from ``app_dir``."""
    for name in (LOCAL_SETTINGS_FILE, EMULATOR_SETTINGS_FILE):
        path = app_dir / name
        if path.is_file():
            return _parse_local_settings(path)
    return LocalSettings()


def _parse_local_settings(path: Path) -> LocalSettings:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HostError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise HostError(f"{path}: expected a JSON object at the top level")
    if document.get("IsEncrypted"):
        raise HostError(f"{path}: encrypted settings are not supported; run 'func settings decrypt' first")
    values = document.get("Values") or {}
    if not isinstance(values, dict):
        raise HostError(f"{path}: 'Values' must be an object of strings")
    host_section = document.get("Host") or {}
    port = host_section.get("LocalHttpPort")
    return LocalSettings(
        values={str(k): "" if v is None else str(v) for k, v in values.items()},
        connection_strings={str(k): str(v) for k, v in (document.get("ConnectionStrings") or {}).items()},
        local_http_port=int(port) if port is not None else None,
        source=path,
    )


def apply_to_environment(settings: LocalSettings, environ: MutableMapping[str, str]) -> list[str]:
    """Copy ``Values`` into ``environ`` where not already set; return the names that were kept as set.

    Core Tools gives the real environment precedence, so a variable exported in the shell wins.
    """
    kept: list[str] = []
    for name, value in settings.values.items():
        if name in environ:
            kept.append(name)
            continue
        environ[name] = value
    for name, value in settings.connection_strings.items():
        environ.setdefault(f"ConnectionStrings:{name}", value)
    return kept


def resolve_expressions(value: str, environ: Mapping[str, str]) -> str:
    """Replace each ``%Name%`` in ``value`` with the setting ``Name``; a missing one is an error."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingNotFoundError(name)
        return environ[name]

    return _EXPRESSION.sub(lookup, value)


def resolve_binding(binding: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of one binding's dict with ``%Name%`` resolved in every string value."""
    return {
        key: resolve_expressions(value, environ) if isinstance(value, str) else value
        for key, value in binding.items()
    }


def setting(environ: Mapping[str, str], name: str) -> str:
    """The value of a setting a binding names (``connection=...``); a missing one is an error."""
    if name in environ:
        return environ[name]
    raise SettingNotFoundError(name)


@dataclass(frozen=True)
class HostConfig:
    """The parts of ``host.json`` the local host honours."""

    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, app_dir: Path, environ: Mapping[str, str] | None = None) -> HostConfig:
        """``host.json``, with the ``AzureFunctionsJobHost__<path>`` settings in ``environ`` over it."""
        path = app_dir / "host.json"
        document: dict[str, Any] = {}
        if not path.is_file():
            log.warning("No host.json in %s: using the defaults of the Functions host", app_dir)
        else:
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise HostError(f"{path}: not valid JSON ({exc})") from exc
            if not isinstance(document, dict):
                raise HostError(f"{path}: expected a JSON object at the top level")
        return cls(_overridden(document, environ or {}))

    def extension(self, name: str) -> Mapping[str, Any]:
        """``extensions.<name>`` (``http``, ``rabbitMQ``, ``serviceBus``), empty when absent."""
        extensions = self.document.get("extensions") or {}
        section = extensions.get(name) or {}
        return section if isinstance(section, dict) else {}

    @property
    def route_prefix(self) -> str:
        prefix = self.extension("http").get("routePrefix", "api")
        return str(prefix).strip("/")

    @property
    def function_timeout_seconds(self) -> float | None:
        """``functionTimeout`` in seconds; ``None`` (or ``-1``) means unbounded."""
        raw = self.document.get("functionTimeout")
        if raw is None or str(raw) == "-1":
            return None
        return parse_timespan(str(raw))


#: The prefix of an app setting that overrides a host.json value, its path joined with ``__``
#: (``AzureFunctionsJobHost__logging__logLevel__Function``), as the Functions host reads them.
HOST_JSON_OVERRIDE = "AzureFunctionsJobHost__"


def _overridden(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``document`` with each ``AzureFunctionsJobHost__a__b`` setting's value (a string) at ``a.b``;
    keys match case-insensitively, as .NET configuration keys do."""
    prefix = HOST_JSON_OVERRIDE.lower()
    for name, value in environ.items():
        if not name.lower().startswith(prefix):
            continue
        *parents, leaf = name[len(prefix) :].split("__")
        node = document
        for part in parents:
            key = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value
    return document


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string: ``hh:mm:ss``, ``d.hh:mm:ss`` or ``hh:mm:ss.fff``."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d+))?", text.strip())
    if not match:
        raise HostError(f"'{text}' is not a TimeSpan (expected hh:mm:ss or d.hh:mm:ss)")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def parse_flag(raw: Any, default: bool, name: str) -> bool:
    """A boolean binding or ``host.json`` value: ``true``/``false`` in any case, or a JSON boolean.

    After ``%Setting%`` resolution a flag may be text. Anything else (``yes``, ``1``, an empty
    setting) is an error naming ``name``, as the .NET host's boolean parsing rejects it.
    """
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise HostError(f"{name}={raw!r}: expected true or false")


def environment() -> MutableMapping[str, str]:
    """The process environment; the one place the host reads it from."""
    return os.environ


THREAD_COUNT_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"
PROCESS_COUNT_SETTING = "FUNCTIONS_WORKER_PROCESS_COUNT"
#: The Functions host's ceiling for FUNCTIONS_WORKER_PROCESS_COUNT (WorkerProcessCountOptions).
MAX_PROCESS_COUNT = 10


def thread_pool_size(environ: Mapping[str, str]) -> int | None:
    """``PYTHON_THREADPOOL_THREAD_COUNT`` as the worker reads it; ``None`` is the pool's default.

    On Python 3.9 and later the worker sets no limit of its own (``ThreadPoolExecutor``'s default,
    ``min(32, cpus + 4)``); a value that is not a whole number of at least 1 is warned about and
    ignored (dispatcher.py ``_get_sync_tp_max_workers``).
    """
    raw = environ.get(THREAD_COUNT_SETTING)
    if raw is None or raw == "":
        return None
    try:
        count = int(raw)
    except ValueError:
        log.warning("%s must be an integer", THREAD_COUNT_SETTING)
        return None
    if count < 1:
        log.warning(
            "%s must be set to a value between 1 and sys.maxint. Reverting to default value for max_workers",
            THREAD_COUNT_SETTING,
        )
        return None
    return count


def worker_process_count(environ: Mapping[str, str]) -> int:
    """``FUNCTIONS_WORKER_PROCESS_COUNT`` as the host reads it (RpcWorkerConfigFactory).

    Unset, or below 2, is one process; more than :data:`MAX_PROCESS_COUNT` stops the host, as does
    a value that is not a whole number.
    """
    raw = environ.get(PROCESS_COUNT_SETTING, "").strip()
    if not raw:
        return 1
    try:
        count = int(raw)
    except ValueError:
        raise HostError(f"{PROCESS_COUNT_SETTING}='{raw}' is not a whole number") from None
    if count > MAX_PROCESS_COUNT:
        raise HostError(
            f"{PROCESS_COUNT_SETTING}={count}: ProcessCount must not be greater than MaxProcessCount"
            f" ({MAX_PROCESS_COUNT})"
        )
    return max(count, 1)
