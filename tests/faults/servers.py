"""Private RabbitMQ and Valkey servers that a fault test may stop, freeze and start again.

Each lives on free ports with its state under a folder of its own, started through the project's
own service code (``local.services``), so stopping one never touches the developer's servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from local import services
from local.services.service import instances
from tests.hosting import free_port, free_port_pair


@dataclass(frozen=True)
class PrivateServer:
    """One service (``valkey`` or ``rabbitmq``) of this test module, on ``port``, kept in ``state``."""

    name: str
    port: int
    state: Path

    @property
    def ports(self) -> dict[str, int]:
        return {self.name: self.port}

    def start(self) -> None:
        """Start it (again): same port, same data folder, so its data survives a stop."""
        services.ensure([self.name], ports=self.ports, state_dir=self.state, report=lambda line: None)

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM to the process group started here)."""
        services.down([self.name], ports=self.ports, state_dir=self.state, report=lambda line: None)

    def url(self, database: int = 0) -> str:
        if self.name == "valkey":
            return f"valkey://127.0.0.1:{self.port}/{database}"
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def server_pids(self) -> list[int]:
        """The pids of the server itself (``beam.smp`` for RabbitMQ) in the process group started
        here; never a process of another group, so the developer's servers are out of reach."""
        (service,) = instances([self.name], self.ports, self.state)
        group = int(service.pidfile.read_text(encoding="utf-8").strip())
        wanted = b"beam.smp" if self.name == "rabbitmq" else b"valkey-server"
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError):
                fields = stat.read_text().rpartition(")")[2].split()
                if int(fields[2]) != group:
                    continue
                pid = int(stat.parent.name)
                if wanted in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
        if not found:
            raise RuntimeError(f"no {self.name} server process in group {group}")
        return found

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the server for the block, SIGCONT after it: a broker that hangs, not one that is gone."""
        pids = self.server_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def private_server(name: str, state: Path) -> Iterator[PrivateServer]:
    """A started private ``name`` server on free ports; stopped (and its state removed by the caller)."""
    port = free_port_pair() if name == "rabbitmq" else free_port()
    server = PrivateServer(name, port, state)
    server.start()
    try:
        yield server
    finally:
        server.stop()
