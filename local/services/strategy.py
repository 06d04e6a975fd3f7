"""Pure decisions: which strategy a service takes, and the commands that install it."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Azurite 3.35.x is the last line that runs on Node 20.
AZURITE_PACKAGE = "azurite@3.35"
APT_PACKAGES: Mapping[str, str] = {"valkey": "valkey-server", "rabbitmq": "rabbitmq-server"}
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/bookworm-backports.sources")
BACKPORTS_SOURCE_TEXT = (
    "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)


class Strategy(enum.Enum):
    """How a service comes to answer on its port."""

    REUSE = "reuse"
    START = "start"
    INSTALL = "install"
    DOCKER = "docker"
    MISSING = "missing"


@dataclass(frozen=True)
class Facts:
    """What decides a service's strategy; later facts matter only when earlier ones are false."""

    answering: bool
    binary: bool
    installable: bool
    docker: bool


def decide(facts: Facts) -> Strategy:
    """The first strategy that applies: reuse, start, install then start, Docker, or give up."""
    if facts.answering:
        return Strategy.REUSE
    if facts.binary:
        return Strategy.START
    if facts.installable:
        return Strategy.INSTALL
    if facts.docker:
        return Strategy.DOCKER
    return Strategy.MISSING


@dataclass(frozen=True)
class System:
    """The machine, as far as installing goes."""

    debian_like: bool
    codename: str
    root: bool
    npm: bool
    backports: bool = False


def fix_commands(name: str, system: System) -> list[str]:
    """The commands a user runs to get ``name`` installed."""
    sudo = "" if system.root else "sudo "
    if name == "azurite":
        if system.npm:
            return [f"{sudo}npm install -g {AZURITE_PACKAGE}"]
        return ["install Node.js 20 with npm", f"{sudo}npm install -g {AZURITE_PACKAGE}"]
    if not system.debian_like:
        site = "https://valkey.io/download/" if name == "valkey" else "https://www.rabbitmq.com/docs/download"
        return [f"install {APT_PACKAGES[name]} from {site}, or start a Docker engine"]
    commands = [" ".join(command) for command in apt_commands([name], system.codename, sudo=sudo.strip())]
    if name == "valkey" and system.codename == "bookworm" and not system.backports:
        source = BACKPORTS_SOURCE_TEXT.replace("\n", "\\n")
        commands.insert(0, f"printf '{source}' | {sudo}tee {BACKPORTS_SOURCE}")
    return commands


def apt_commands(names: Sequence[str], codename: str, *, sudo: str = "") -> list[list[str]]:
    """``apt-get update`` once, then the installs; Valkey comes from backports on bookworm."""
    prefix = [sudo] if sudo else []
    commands = [[*prefix, "apt-get", "update"]]
    main = [APT_PACKAGES[name] for name in names if not (name == "valkey" and codename == "bookworm")]
    if "valkey" in names and codename == "bookworm":
        commands.append([*prefix, "apt-get", "install", "-y", "-t", "bookworm-backports", "valkey-server"])
    if main:
        commands.append([*prefix, "apt-get", "install", "-y", *main])
    return commands
