"""Valkey, RabbitMQ and Azurite for the local profile: reuse, start, install, or say how.

For each service, in order: reuse whatever answers on its port; else start the binary on PATH,
detached, with data, log and pidfile under ``.services/<name>/``; else, on Debian/Ubuntu as root,
install it and start it; else start it with Docker Compose (``local/compose.yaml``); else stop with
the command that fixes it. ``down`` stops only what was started here.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from local.errors import HostError

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / ".services"
COMPOSE_FILE = Path(__file__).resolve().parent / "compose.yaml"
HOST = "127.0.0.1"
NAMES = ("valkey", "rabbitmq", "azurite")
DEFAULT_PORTS: Mapping[str, int] = {"valkey": 6379, "rabbitmq": 5672, "azurite": 10000}
#: Azurite 3.35.x is the last line that runs on Node 20.
AZURITE_PACKAGE = "azurite@3.35"
APT_PACKAGES: Mapping[str, str] = {"valkey": "valkey-server", "rabbitmq": "rabbitmq-server"}
#: Seconds a service gets to answer after it was started; RabbitMQ's first boot is the slow one.
READY_TIMEOUTS: Mapping[str, float] = {"valkey": 15.0, "rabbitmq": 90.0, "azurite": 30.0}
#: What the command line of a process we started contains (guards against a reused pid).
_PROCESS_MARKS: Mapping[str, str] = {"valkey": "valkey-server", "rabbitmq": "rabbitmq", "azurite": "azurite"}
_RABBITMQ_LIB = Path("/usr/lib/rabbitmq/bin")
BACKPORTS_SOURCE = Path("/etc/apt/sources.list.d/bookworm-backports.sources")
BACKPORTS_SOURCE_TEXT = (
    "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)

Report = Callable[[str], None]


def say(line: str) -> None:
    """Where progress goes: one line on stderr, at once."""
    print(line, file=sys.stderr, flush=True)


class ServicesError(HostError):
    """A service could not be reused, started or installed; the message says how to fix it."""


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


# -- facts about this machine -------------------------------------------------------------------


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


# -- up ------------------------------------------------------------------------------------------


def ensure(
    names: Sequence[str] = NAMES,
    *,
    ports: Mapping[str, int] | None = None,
    state_dir: Path = STATE_DIR,
    report: Report = say,
) -> dict[str, Strategy]:
    """Make every named service answer; the strategy each one took."""
    chosen = instances(names, ports, state_dir)
    system = probe_system()
    with _locked(state_dir):
        plan = {service: decide(probe(service, system)) for service in chosen}
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
    executable = find_binary(service.name)
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


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One ``services up``/``down`` at a time, so two ``make test`` never start two brokers."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# -- install -------------------------------------------------------------------------------------


def install(names: Sequence[str], system: System, state_dir: Path, report: Report) -> None:
    """Install what is missing: apt packages and Azurite from npm, side by side."""
    jobs: list[tuple[str, list[list[str]]]] = []
    apt_names = [name for name in names if name in APT_PACKAGES]
    if apt_names:
        if system.codename == "bookworm" and "valkey" in apt_names and not system.backports:
            BACKPORTS_SOURCE.write_text(BACKPORTS_SOURCE_TEXT, encoding="utf-8")
            report(f"apt: added {BACKPORTS_SOURCE}")
        jobs.append(("apt", apt_commands(apt_names, system.codename)))
    if "azurite" in names:
        jobs.append(("npm", [["npm", "install", "-g", AZURITE_PACKAGE]]))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        running = [pool.submit(_run_job, label, commands, state_dir, report) for label, commands in jobs]
        for job in running:
            job.result()


def _run_job(label: str, commands: list[list[str]], state_dir: Path, report: Report) -> None:
    log = state_dir / f"install-{label}.log"
    environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    started = time.monotonic()
    with log.open("wb") as sink:
        for command in commands:
            report(f"{label}: {' '.join(command)} (log {_shown(log)})")
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environ,
                check=False,
            )
            if done.returncode != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                raise ServicesError("\n".join([f"{label}: {' '.join(command)} failed:", *tail]))
    report(f"{label}: done in {time.monotonic() - started:.1f}s")


def _has_backports() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        with contextlib.suppress(OSError):
            lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
            if any("bookworm-backports" in line and not line.lstrip().startswith("#") for line in lines):
                return True
    return False


# -- processes -----------------------------------------------------------------------------------

_children: dict[int, subprocess.Popen[bytes]] = {}


def server_command(service: Service, executable: str) -> list[str]:
    """The command line that runs ``service`` in the foreground on loopback."""
    data = str(service.directory / "data")
    if service.name == "valkey":
        options = {"--port": service.port, "--bind": HOST, "--dir": data, "--save": "", "--appendonly": "no"}
        return [executable, *_flags(options), "--daemonize", "no"]
    if service.name == "azurite":
        blob, queue, table = service.ports
        ports = {"--blobPort": blob, "--queuePort": queue, "--tablePort": table}
        hosts = {"--blobHost": HOST, "--queueHost": HOST, "--tableHost": HOST}
        quiet = ["--silent", "--disableTelemetry", "--skipApiVersionCheck"]
        return [executable, *quiet, "--location", data, *_flags(hosts), *_flags(ports)]
    return [executable]


def _flags(options: Mapping[str, object]) -> list[str]:
    return [part for flag, value in options.items() for part in (flag, str(value))]


def rabbitmq_nodename(port: int) -> str:
    return "rabbit@localhost" if port == DEFAULT_PORTS["rabbitmq"] else f"rabbit-{port}@localhost"


def rabbitmq_environ(service: Service) -> dict[str, str]:
    """RabbitMQ's settings: everything under the service folder, every listener on loopback."""
    folder = service.directory
    return {
        "HOME": os.environ.get("HOME") or str(Path.home()),  # where the Erlang cookie lives
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_NODENAME": rabbitmq_nodename(service.port),
        "RABBITMQ_NODE_IP_ADDRESS": HOST,
        "RABBITMQ_NODE_PORT": str(service.port),
        "RABBITMQ_DIST_PORT": str(service.port + 20000),
        "RABBITMQ_FEATURE_FLAGS_FILE": str(folder / "feature_flags"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "ERL_EPMD_ADDRESS": HOST,
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def rabbitmqctl(*args: str, port: int = DEFAULT_PORTS["rabbitmq"], state_dir: Path = STATE_DIR) -> str:
    """Run ``rabbitmqctl`` against the local node (e.g. ``stop_app``, ``start_app``); its output."""
    (service,) = instances(["rabbitmq"], {"rabbitmq": port}, state_dir)
    direct = _RABBITMQ_LIB / "rabbitmqctl"
    executable = str(direct) if direct.is_file() else shutil.which("rabbitmqctl")
    if executable is None:
        raise ServicesError("rabbitmqctl: not installed (sudo apt-get install -y rabbitmq-server)")
    command = [executable, "-n", rabbitmq_nodename(port), *args]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, **rabbitmq_environ(service)}
    )
    if done.returncode != 0:
        raise ServicesError(f"rabbitmqctl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _spawn(service: Service, executable: str) -> int:
    """Start detached (own session) so the server outlives this command; its pid."""
    environ = dict(os.environ)
    (service.directory / "data").mkdir(parents=True, exist_ok=True)
    if service.name == "rabbitmq":
        environ.update(rabbitmq_environ(service))
        for folder in ("mnesia", "log"):
            (service.directory / folder).mkdir(exist_ok=True)
    with service.log.open("wb") as log:
        process = subprocess.Popen(
            server_command(service, executable),
            cwd=service.directory,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[process.pid] = process
    service.pidfile.write_text(f"{process.pid}\n", encoding="utf-8")
    return process.pid


def _read_pid(service: Service) -> int | None:
    try:
        return int(service.pidfile.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _our_pid(service: Service) -> int | None:
    """The pid in the pidfile if that process is alive and is this service's server."""
    pid = _read_pid(service)
    if pid is None:
        return None
    _reap(pid)
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except ProcessLookupError:
        return None
    except OSError:
        return pid  # no /proc here: trust the pidfile
    return pid if _PROCESS_MARKS[service.name].encode() in cmdline else None


def _exited(service: Service) -> str | None:
    """How the server started for ``service`` ended, if it did."""
    if service.compose_marker.exists():
        return None
    child = _children.get(_read_pid(service) or 0)
    if child is not None:  # our own child: its exit status is certain, even before it exec'd
        code = child.poll()
        return None if code is None else f"exited with code {code}"
    return None if _our_pid(service) is not None else "exited"


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _stop(service: Service, grace: float = 20.0) -> str:
    """Stop what was started here: SIGTERM to its process group, then SIGKILL; what happened."""
    if service.compose_marker.exists():
        _compose(service, "rm", "--stop", "--force", service.name)
        service.compose_marker.unlink()
        return "removed its container"
    pid = _our_pid(service)
    service.pidfile.unlink(missing_ok=True)
    if pid is None:
        return ""
    started = time.monotonic()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        if _gone(pid, wait):
            how = "stopped" if sig is signal.SIGTERM else "killed"
            return f"{how} pid {pid} after {time.monotonic() - started:.1f}s"
    return f"pid {pid} survived SIGKILL"


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_running(pid):
            _children.pop(pid, None)
            return True
        time.sleep(0.1)
    return False


def _group_running(pgid: int) -> bool:
    """Whether a process of the group still runs; zombies wait for a parent that may be slow to reap."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    if not Path("/proc/self/stat").exists():
        return True  # no /proc to tell zombies apart
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                state, _parent, group = stat.read_text().rpartition(")")[2].split()[:3]
                if int(group) == pgid and state != "Z":
                    return True
    except OSError:
        return True
    return False


_COMPOSE_PORTS: Mapping[str, tuple[str, ...]] = {
    "valkey": ("VALKEY_PORT",),
    "rabbitmq": ("RABBITMQ_PORT",),
    "azurite": ("AZURITE_BLOB_PORT", "AZURITE_QUEUE_PORT", "AZURITE_TABLE_PORT"),
}


def _compose(service: Service, *args: str) -> None:
    names = _COMPOSE_PORTS[service.name]
    ports = {f"TASKLANE_{name}": str(port) for name, port in zip(names, service.ports, strict=True)}
    environ = {**os.environ, **ports}
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), *args],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ServicesError(f"{service.name}: docker compose {' '.join(args)} failed: {done.stderr.strip()}")


# -- down and status -----------------------------------------------------------------------------


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
