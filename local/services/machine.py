"""Facts about this machine: the system, the servers' executables, Docker."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from pathlib import Path

from local.services.service import Service, answers
from local.services.strategy import Facts, System

_RABBITMQ_LIB = Path("/usr/lib/rabbitmq/bin")


def probe_system() -> System:
    release = _os_release()
    family = f"{release.get('ID', '')} {release.get('ID_LIKE', '')}"
    return System(
        debian_like=("debian" in family or "ubuntu" in family) and shutil.which("apt-get") is not None,
        codename=release.get("VERSION_CODENAME", ""),
        root=os.geteuid() == 0,
        npm=shutil.which("npm") is not None,
        backports=_has_backports(),
    )


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def find_binary(name: str) -> str | None:
    """The server's executable; for RabbitMQ the real script, not Debian's user-switching wrapper."""
    if name == "rabbitmq":
        direct = _RABBITMQ_LIB / "rabbitmq-server"
        return str(direct) if direct.is_file() else shutil.which("rabbitmq-server")
    if name == "valkey":
        return shutil.which("valkey-server")
    on_path = shutil.which("azurite")
    prefix = _npm_prefix() if on_path is None else None
    if prefix is not None and (prefix / "bin" / "azurite").is_file():
        return str(prefix / "bin" / "azurite")
    return on_path


def _npm_prefix() -> Path | None:
    if shutil.which("npm") is None:
        return None
    done = subprocess.run(["npm", "prefix", "-g"], capture_output=True, text=True, check=False)
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def _installable(name: str, system: System) -> bool:
    if name == "azurite":  # npm -g works without root when its prefix is the user's own (nvm)
        return system.npm and (system.root or os.access(_npm_prefix() or "/", os.W_OK))
    return system.debian_like and system.root


@functools.cache
def docker_available() -> bool:
    """Whether a Docker engine answers and Compose is there to drive it."""
    if shutil.which("docker") is None:
        return False
    for command in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            subprocess.run(command, capture_output=True, check=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


def probe(service: Service, system: System) -> Facts:
    """Gather the facts, each only when the earlier ones leave the decision open."""
    answering = answers(service)
    binary = not answering and find_binary(service.name) is not None
    installable = not (answering or binary) and _installable(service.name, system)
    docker = not (answering or binary or installable) and docker_available()
    return Facts(answering, binary, installable, docker)


def _has_backports() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        with contextlib.suppress(OSError):
            lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
            if any("bookworm-backports" in line and not line.lstrip().startswith("#") for line in lines):
                return True
    return False
