"""Where each service lives: its ports on loopback, its folder, and whether it answers."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.host.errors import HostError

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = REPO_ROOT / ".services"
HOST = "127.0.0.1"
NAMES = ("valkey", "rabbitmq", "azurite")
DEFAULT_PORTS: Mapping[str, int] = {"valkey": 6379, "rabbitmq": 5672, "azurite": 10000}

Report = Callable[[str], None]


def say(line: str) -> None:
    """Where progress goes: one line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


class ServicesError(HostError):
    """A service could not be reused, started or installed; the message says how to fix it."""


@dataclass(frozen=True)
class Service:
    """One service instance: its name, first port and folder for data, log and pidfile."""

    name: str
    port: int
    directory: Path

    @property
    def ports(self) -> tuple[int, ...]:
        """Every port it listens on (Azurite: blob, queue, table)."""
        return (self.port, self.port + 1, self.port + 2) if self.name == "azurite" else (self.port,)

    @property
    def address(self) -> str:
        first, last = self.ports[0], self.ports[-1]
        return f"{HOST}:{first}" if first == last else f"{HOST}:{first}-{last}"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def pidfile(self) -> Path:
        return self.directory / "pid"

    @property
    def compose_marker(self) -> Path:
        return self.directory / "compose"


def instances(
    names: Sequence[str] = NAMES, ports: Mapping[str, int] | None = None, state_dir: Path = STATE_DIR
) -> list[Service]:
    """The instances for ``names``; one on a port other than its default gets its own folder."""
    chosen = {**DEFAULT_PORTS, **(ports or {})}
    unknown = sorted(set(names) - set(DEFAULT_PORTS))
    if unknown:
        raise ServicesError(f"unknown service {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    found = []
    for name in names:
        folder = name if chosen[name] == DEFAULT_PORTS[name] else f"{name}-{chosen[name]}"
        found.append(Service(name, chosen[name], state_dir / folder))
    return found


def answers(service: Service) -> bool:
    """Whether every port of ``service`` accepts a TCP connection on loopback."""
    for port in service.ports:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                pass
        except OSError:
            return False
    return True


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
