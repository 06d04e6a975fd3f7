"""The local services keep what they hold across a restart of `python -m local services`."""

from __future__ import annotations

from pathlib import Path

import valkey

from local import services
from tests.conftest import require_binary
from tests.hosting import free_port


def test_valkey_started_here_keeps_its_keys_across_a_restart(tmp_path: Path) -> None:
    require_binary("valkey-server")
    # Given a Valkey started here on a port of its own, holding a key
    ports = {"valkey": free_port()}
    lines: list[str] = []
    services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
    try:
        with valkey.Valkey(port=ports["valkey"]) as client:
            client.set("task:restart-check", "succeeded")

        # When it is brought down and started again
        services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
        services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)

        # Then the key is still there
        with valkey.Valkey(port=ports["valkey"]) as client:
            assert client.get("task:restart-check") == b"succeeded"
    finally:
        services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
