"""The servers started here: command lines, detached spawn, pidfiles, stop, Docker Compose."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from local.services.machine import _RABBITMQ_LIB
from local.services.service import DEFAULT_PORTS, HOST, STATE_DIR, Service, ServicesError, instances

COMPOSE_FILE = Path(__file__).resolve().parents[1] / "compose.yaml"
#: What the command line of a process we started contains (guards against a reused pid).
_PROCESS_MARKS: Mapping[str, str] = {"valkey": "valkey-server", "rabbitmq": "rabbitmq", "azurite": "azurite"}

_children: dict[int, subprocess.Popen[bytes]] = {}


def server_command(service: Service, executable: str) -> list[str]:
    """The command line that runs ``service`` in the foreground on loopback."""
    data = str(service.directory / "data")
    if service.name == "valkey":
        # The append-only file (fsync once a second) keeps tasks, counters and idempotency keys
        # across a restart; RDB snapshots stay off, they would only duplicate it.
        options = {
            "--port": service.port,
            "--bind": HOST,
            "--dir": data,
            "--save": "",
            "--appendonly": "yes",
            "--appendfsync": "everysec",
        }
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
