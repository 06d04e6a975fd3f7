"""The tests' own Valkey: one server per test session on a free port, so that tests may empty their
databases without touching the Valkey a developer is running (``make run`` uses 6379)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from local import services
from tests.hosting import free_port

_started: dict[str, int] = {}


def private_valkey_port() -> int:
    """The port of this session's Valkey, started on first use and stopped when the session ends.

    Raises :class:`RuntimeError` when ``valkey-server`` is not installed.
    """
    if "port" not in _started:
        if shutil.which("valkey-server") is None:
            raise RuntimeError("valkey-server is not installed; `python -m local services up` installs it")
        port = free_port()
        state = Path(tempfile.mkdtemp(prefix="tasklane-test-valkey-"))
        ports = {"valkey": port}
        services.ensure(["valkey"], ports=ports, state_dir=state, report=lambda line: None)
        atexit.register(_stop, ports, state)
        _started["port"] = port
    return _started["port"]


def private_valkey_url(database: int) -> str:
    return f"valkey://127.0.0.1:{private_valkey_port()}/{database}"


def _stop(ports: dict[str, int], state: Path) -> None:
    services.down(["valkey"], ports=ports, state_dir=state, report=lambda line: None)
    shutil.rmtree(state, ignore_errors=True)
