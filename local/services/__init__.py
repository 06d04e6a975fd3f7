"""Valkey, RabbitMQ and Azurite for the local profile: reuse, start, install, or say how.

For each service, in order: reuse whatever answers on its port; else start the binary on PATH,
detached, with data, log and pidfile under ``.services/<name>/``; else, on Debian/Ubuntu as root,
install it and start it; else start it with Docker Compose (``local/compose.yaml``); else stop with
the command that fixes it. ``down`` stops only what was started here.
"""

from __future__ import annotations

from local.services.installer import install
from local.services.lifecycle import READY_TIMEOUTS, Status, down, ensure, status
from local.services.machine import docker_available, find_binary, probe, probe_system
from local.services.processes import (
    COMPOSE_FILE,
    rabbitmq_environ,
    rabbitmq_nodename,
    rabbitmqctl,
    server_command,
)
from local.services.service import (
    DEFAULT_PORTS,
    HOST,
    NAMES,
    REPO_ROOT,
    STATE_DIR,
    Report,
    Service,
    ServicesError,
    answers,
    instances,
    say,
)
from local.services.strategy import (
    APT_PACKAGES,
    AZURITE_PACKAGE,
    BACKPORTS_SOURCE,
    BACKPORTS_SOURCE_TEXT,
    Facts,
    Strategy,
    System,
    apt_commands,
    decide,
    fix_commands,
)

__all__ = [
    "APT_PACKAGES",
    "AZURITE_PACKAGE",
    "BACKPORTS_SOURCE",
    "BACKPORTS_SOURCE_TEXT",
    "COMPOSE_FILE",
    "DEFAULT_PORTS",
    "HOST",
    "NAMES",
    "READY_TIMEOUTS",
    "REPO_ROOT",
    "STATE_DIR",
    "Facts",
    "Report",
    "Service",
    "ServicesError",
    "Status",
    "Strategy",
    "System",
    "answers",
    "apt_commands",
    "decide",
    "docker_available",
    "down",
    "ensure",
    "find_binary",
    "fix_commands",
    "install",
    "instances",
    "probe",
    "probe_system",
    "rabbitmq_environ",
    "rabbitmq_nodename",
    "rabbitmqctl",
    "say",
    "server_command",
    "status",
]
