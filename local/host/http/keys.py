"""Function keys and auth levels, enforced locally (Core Tools ignores them; we do not).

Keys come from settings, so the same values can be set in Azure:

- ``FUNCTIONS_MASTER_KEY``: the master key; every level, including ``admin``.
- ``FUNCTIONS_HOST_KEY``: host keys (comma-separated); every ``function``-level function.
- ``FUNCTIONS_KEY_<NAME>``: keys of one function (name upper-cased, ``-`` as ``_``).

With no key set at all, a host key is generated on first start and kept, readable only by its
owner, in ``.services/host-keys.json``; ``python -m local keys`` prints it. No key is ever logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MASTER_SETTING = "FUNCTIONS_MASTER_KEY"
HOST_SETTING = "FUNCTIONS_HOST_KEY"
FUNCTION_PREFIX = "FUNCTIONS_KEY_"
KEYS_FILE = Path(".services") / "host-keys.json"
HEADER = "x-functions-key"
QUERY = "code"


def _split(value: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in value.split(",") if k.strip())


def function_setting(function_name: str) -> str:
    return FUNCTION_PREFIX + function_name.upper().replace("-", "_")


@dataclass(frozen=True)
class KeyRing:
    """The keys a request may present, and the check of one against an auth level."""

    master: tuple[str, ...] = ()
    host: tuple[str, ...] = ()
    functions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, environ: Mapping[str, str], function_names: list[str]) -> KeyRing:
        return cls(
            master=_split(environ.get(MASTER_SETTING, "")),
            host=_split(environ.get(HOST_SETTING, "")),
            functions={name: _split(environ.get(function_setting(name), "")) for name in function_names},
        )

    def allows(self, auth_level: str, function_name: str, presented: str | None) -> bool:
        """Whether ``presented`` opens a function of ``auth_level`` (anonymous, function, admin)."""
        level = auth_level.lower()
        if level == "anonymous":
            return True
        if not presented:
            return False
        candidates = list(self.master)
        if level == "function":
            candidates += [*self.host, *self.functions.get(function_name, ())]
        return _any_equal(candidates, presented)

    def level(self, presented: str | None) -> str | None:
        """The level a key grants outside any function, as the host's admin API reads it:
        ``admin`` for a master key, ``function`` for a host key, ``None`` for none or another key
        (a function's own key names no function here)."""
        if not presented:
            return None
        if _any_equal(self.master, presented):
            return "admin"
        if _any_equal(self.host, presented):
            return "function"
        return None


def _any_equal(candidates: Iterable[str], presented: str) -> bool:
    # Compare every candidate in constant time so a timing difference cannot reveal a key.
    found = False
    for key in candidates:
        found |= hmac.compare_digest(key.encode(), presented.encode())
    return found


def ensure_host_key(app_dir: Path, environ: MutableMapping[str, str]) -> Path | None:
    """Give a host with no keys configured a generated host key; return the file it lives in."""
    if environ.get(MASTER_SETTING) or environ.get(HOST_SETTING):
        return None
    path = app_dir / KEYS_FILE
    key = read_generated_key(path)
    if key is None:
        key = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created readable by the owner only, before the key is written into it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"hostKey": key}, handle)
    environ[HOST_SETTING] = key
    return path


def read_generated_key(path: Path) -> str | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = document.get("hostKey") if isinstance(document, dict) else None
    return key if isinstance(key, str) and key else None
