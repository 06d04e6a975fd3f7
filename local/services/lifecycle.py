"""``services up``, ``down`` and ``status``: bring services up, wait for them, stop them, report."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from local.services import machine
from local.services.installer import install
from local.services.processes import _compose, _exited, _our_pid, _spawn, _stop
from local.services.service import (
    NAMES,
    STATE_DIR,
    Report,
    Service,
    ServicesError,
    _shown,
    answers,
    instances,
    say,
)
from local.services.strategy import Strategy, System, decide, fix_commands

#: Seconds a service gets to answer after it was started; RabbitMQ's first boot is the slow one.
READY_TIMEOUTS: Mapping[str, float] = {"valkey": 15.0, "rabbitmq": 90.0, "azurite": 30.0}


def ensure(
    names: Sequence[str] = NAMES,
    *,
    ports: Mapping[str, int] | None = None,
    state_dir: Path = STATE_DIR,
    report: Report = say,
) -> dict[str, Strategy]:
    """Make every named service answer; the strategy each one took."""
    chosen = instances(names, ports, state_dir)
    system = machine.probe_system()
    with _locked(state_dir):
        plan = {service: decide(machine.probe(service, system)) for service in chosen}
        missing = [service for service, strategy in plan.items() if strategy is Strategy.MISSING]
        if missing:
            raise ServicesError("\n".join(_missing_message(service, system) for service in missing))
        to_install = [service for service, strategy in plan.items() if strategy is Strategy.INSTALL]
        if to_install:
            install([service.name for service in to_install], system, state_dir, report)
        waiting = [service for service in chosen if _bring_up(service, plan[service], report)]
        _wait_ready(waiting, report)
    return {service.name: strategy for service, strategy in plan.items()}


def _missing_message(service: Service, system: System) -> str:
    lines = [
        f"{service.name}: nothing answers on {service.address}, it is not installed, this user cannot "
        "install it and no Docker engine answers. Fix it with:",
        *(f"    {command}" for command in fix_commands(service.name, system)),
    ]
    return "\n".join(lines)


def _bring_up(service: Service, strategy: Strategy, report: Report) -> bool:
    """Start ``service`` unless it answers; whether there is something to wait for."""
    if strategy is Strategy.REUSE or answers(service):
        report(f"{service.name}: reusing {service.address}")
        return False
    if strategy is Strategy.DOCKER:
        report(f"{service.name}: docker compose up -d {service.name}")
        _compose(service, "up", "-d", service.name)
        service.directory.mkdir(parents=True, exist_ok=True)
        service.compose_marker.write_text("docker compose\n", encoding="utf-8")
        return True
    pid = _our_pid(service)
    if pid is not None:
        report(f"{service.name}: already starting (pid {pid})")
        return True
    executable = machine.find_binary(service.name)
    if executable is None:
        raise ServicesError(f"{service.name}: installed, yet its executable is not on PATH")
    pid = _spawn(service, executable)
    report(f"{service.name}: started {executable} (pid {pid}, log {_shown(service.log)})")
    return True


def _wait_ready(pending: list[Service], report: Report) -> None:
    started = time.monotonic()
    noted = dict.fromkeys((service.name for service in pending), 0)
    while pending:
        for service in list(pending):
            elapsed = time.monotonic() - started
            if answers(service):
                report(f"{service.name}: ready on {service.address} after {elapsed:.1f}s")
                pending.remove(service)
            elif (exited := _exited(service)) is not None:
                raise ServicesError(_failure(service, f"{exited} after {elapsed:.1f}s"))
            elif elapsed > READY_TIMEOUTS[service.name]:
                _stop(service)
                timeout = READY_TIMEOUTS[service.name]
                raise ServicesError(
                    _failure(service, f"did not answer on {service.address} in {timeout:.0f}s")
                )
            elif int(elapsed) >= noted[service.name] + 2:
                noted[service.name] = int(elapsed)
                report(f"{service.name}: waiting for {service.address} ({int(elapsed)}s)")
        time.sleep(0.2)


def _failure(service: Service, what: str) -> str:
    try:
        tail = service.log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
    except OSError:
        tail = ["(no log)"]
    return "\n".join([f"{service.name}: {what}; last lines of {_shown(service.log)}:", *tail])


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One ``services up``/``down`` at a time, so two ``make test`` never start two brokers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def down(
    names: Sequence[str] = NAMES,
    *,
    ports: Mapping[str, int] | None = None,
    state_dir: Path = STATE_DIR,
    report: Report = say,
) -> None:
    """Stop the services started here, gracefully; leave the others alone."""
    with _locked(state_dir):
        for service in instances(names, ports, state_dir):
            outcome = _stop(service)
            if outcome:
                report(f"{service.name}: {outcome}")
            elif answers(service):
                report(f"{service.name}: {service.address} was not started here; leaving it alone")
            else:
                report(f"{service.name}: not running")


@dataclass(frozen=True)
class Status:
    """One line of ``services status``."""

    name: str
    address: str
    answering: bool
    started_by: str

    def __str__(self) -> str:
        state = "answering" if self.answering else "not answering"
        return f"{self.name:<9} {self.address:<22} {state:<14} {self.started_by}"


def status(
    names: Sequence[str] = NAMES, *, ports: Mapping[str, int] | None = None, state_dir: Path = STATE_DIR
) -> list[Status]:
    """Each service: where, whether it answers, and who started it."""
    found = []
    for service in instances(names, ports, state_dir):
        pid = _our_pid(service)
        answering = answers(service)
        if service.compose_marker.exists():
            started_by = "docker compose (local/compose.yaml)"
        elif pid is not None:
            started_by = f"tasklane (pid {pid}, {_shown(service.directory)})"
        else:
            started_by = "started elsewhere" if answering else "-"
        found.append(Status(service.name, service.address, answering, started_by))
    return found
