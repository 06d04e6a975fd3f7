"""``python -m local services``: which strategy applies, what it runs, and a real start and stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from local import services
from local.services import Facts, Strategy, System
from tests.conftest import require_binary
from tests.hosting import free_port


@pytest.mark.parametrize(
    ("answering", "binary", "installable", "docker", "expected"),
    [
        (True, True, True, True, Strategy.REUSE),
        (True, False, False, False, Strategy.REUSE),
        (False, True, True, True, Strategy.START),
        (False, True, False, False, Strategy.START),
        (False, False, True, True, Strategy.INSTALL),
        (False, False, True, False, Strategy.INSTALL),
        (False, False, False, True, Strategy.DOCKER),
        (False, False, False, False, Strategy.MISSING),
    ],
)
def test_the_first_strategy_that_applies_wins(
    answering: bool, binary: bool, installable: bool, docker: bool, expected: Strategy
) -> None:
    # Given what is true of a service on this machine / When deciding / Then the earliest option wins
    assert services.decide(Facts(answering, binary, installable, docker)) is expected


BACKPORTS = ["apt-get", "install", "-y", "-t", "bookworm-backports", "valkey-server"]


@pytest.mark.parametrize(
    ("names", "codename", "expected"),
    [
        (
            ["valkey", "rabbitmq"],
            "bookworm",
            [["apt-get", "update"], BACKPORTS, [*BACKPORTS[:3], "rabbitmq-server"]],
        ),
        (["rabbitmq"], "bookworm", [["apt-get", "update"], ["apt-get", "install", "-y", "rabbitmq-server"]]),
        (["valkey"], "bookworm", [["apt-get", "update"], BACKPORTS]),
        (
            ["valkey", "rabbitmq"],
            "trixie",
            [["apt-get", "update"], ["apt-get", "install", "-y", "valkey-server", "rabbitmq-server"]],
        ),
    ],
)
def test_apt_updates_once_and_takes_valkey_from_backports_on_bookworm(
    names: list[str], codename: str, expected: list[list[str]]
) -> None:
    assert services.apt_commands(names, codename) == expected


DEBIAN_USER = System(debian_like=True, codename="bookworm", root=False, npm=True, backports=True)


@pytest.mark.parametrize(
    ("name", "system", "expected"),
    [
        (
            "valkey",
            DEBIAN_USER,
            ["sudo apt-get update", "sudo apt-get install -y -t bookworm-backports valkey-server"],
        ),
        ("rabbitmq", DEBIAN_USER, ["sudo apt-get update", "sudo apt-get install -y rabbitmq-server"]),
        ("azurite", DEBIAN_USER, ["sudo npm install -g azurite@3.35"]),
        (
            "azurite",
            System(debian_like=False, codename="", root=False, npm=False),
            ["install Node.js 20 with npm", "sudo npm install -g azurite@3.35"],
        ),
        (
            "valkey",
            System(debian_like=False, codename="", root=False, npm=False),
            ["install valkey-server from https://valkey.io/download/, or start a Docker engine"],
        ),
    ],
)
def test_the_fix_names_the_exact_command(name: str, system: System, expected: list[str]) -> None:
    assert services.fix_commands(name, system) == expected


def test_the_fix_on_bookworm_without_backports_adds_the_source_first() -> None:
    system = System(debian_like=True, codename="bookworm", root=False, npm=True, backports=False)

    first, *rest = services.fix_commands("valkey", system)

    assert first.startswith(
        "printf 'Types: deb\\nURIs: http://deb.debian.org/debian\\nSuites: bookworm-backports"
    )
    assert first.endswith("| sudo tee /etc/apt/sources.list.d/bookworm-backports.sources")
    assert rest[-1] == "sudo apt-get install -y -t bookworm-backports valkey-server"


def test_an_instance_on_another_port_gets_its_own_folder(tmp_path: Path) -> None:
    default, other, azurite = services.instances(
        ["valkey", "rabbitmq", "azurite"], {"rabbitmq": 5673, "azurite": 20000}, tmp_path
    )

    assert (default.directory, default.address) == (tmp_path / "valkey", "127.0.0.1:6379")
    assert (other.directory, other.address) == (tmp_path / "rabbitmq-5673", "127.0.0.1:5673")
    assert azurite.ports == (20000, 20001, 20002)
    assert services.rabbitmq_nodename(5673) == "rabbit-5673@localhost"
    assert services.rabbitmq_nodename(5672) == "rabbit@localhost"


def test_a_second_valkey_starts_from_its_binary_is_reused_and_stops(tmp_path: Path) -> None:
    require_binary("valkey-server")
    # Given a port nobody listens on
    ports = {"valkey": free_port()}
    lines: list[str] = []

    # When the service is ensured twice
    first = services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
    second = services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
    (started,) = services.status(["valkey"], ports=ports, state_dir=tmp_path)

    # Then the first call started it from its binary, the second reused it
    try:
        assert first == {"valkey": Strategy.START}
        assert second == {"valkey": Strategy.REUSE}
        assert started.answering
        assert started.started_by.startswith("tasklane (pid ")
        assert any(line.startswith(f"valkey: ready on 127.0.0.1:{ports['valkey']} after ") for line in lines)
    finally:
        # When it is brought down / Then it stops answering and its pidfile is gone
        services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lines.append)
    (stopped,) = services.status(["valkey"], ports=ports, state_dir=tmp_path)
    assert not stopped.answering
    assert not (tmp_path / f"valkey-{ports['valkey']}" / "pid").exists()
    assert any(line.startswith("valkey: stopped pid ") for line in lines)


def test_a_server_that_exits_at_once_fails_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a valkey-server on PATH that dies on start
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "valkey-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot open the data folder'\nexit 3\n", encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    # When it is ensured / Then the error says how it ended and shows the log
    with pytest.raises(services.ServicesError, match="exited with code 3") as failure:
        services.ensure(["valkey"], ports={"valkey": free_port()}, state_dir=tmp_path / "state", report=print)
    assert "FATAL: cannot open the data folder" in str(failure.value)


def test_nothing_to_start_or_install_stops_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no binary on PATH, a user who cannot install, and no Docker engine
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(services.machine, "find_binary", lambda name: None)
    monkeypatch.setattr(services.machine, "probe_system", lambda: DEBIAN_USER)
    monkeypatch.setattr(services.machine, "docker_available", lambda: False)

    # When RabbitMQ is ensured / Then the error names the command that installs it
    with pytest.raises(services.ServicesError) as failure:
        services.ensure(["rabbitmq"], ports={"rabbitmq": free_port()}, state_dir=tmp_path, report=print)
    assert "    sudo apt-get install -y rabbitmq-server" in str(failure.value).splitlines()
