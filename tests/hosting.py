"""Run the app under our host as a real subprocess, as a user would with `python -m local start`."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port_pair() -> int:
    """A free port whose Erlang distribution port (port + 20000) is free too: a private RabbitMQ's."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        if _free(port) and _free(port + 20000):
            return port
    raise RuntimeError("no free port pair for a private RabbitMQ")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningHost:
    """A started host: its URL, key, settings and output; :meth:`stop` sends SIGTERM."""

    process: subprocess.Popen[str]
    base_url: str
    key: str
    environ: dict[str, str]
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def queue(self) -> str:
        return self.environ["TASKS_QUEUE"]

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"x-functions-key": self.key},
            timeout=10,
            event_hooks={"response": [_remember_answer]},
        )

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.process.returncode

    def read_output(self) -> None:
        """Read the host's output as it comes, so that a host that logs much never blocks on its pipe."""
        self._reader = threading.Thread(target=self._drain, name="host-output", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)


#: (method, path, status) of every answer a test host gave through :meth:`RunningHost.client`; the
#: session checks at its end that the OpenAPI document lists each (tests/conftest.py).
ANSWERS: set[tuple[str, str, int]] = set()


def _remember_answer(response: httpx.Response) -> None:
    ANSWERS.add((response.request.method, response.request.url.path, response.status_code))


def _private_valkey(database: int) -> str:
    from tests.private_valkey import private_valkey_url  # late: private_valkey imports this module

    return private_valkey_url(database)


def start_host(
    app_dir: Path = ROOT, *, settings: dict[str, str] | None = None, wait: bool = True
) -> RunningHost:
    """Start ``python -m local start`` for ``app_dir`` with a queue and Valkey database of its own."""
    port = free_port()
    key = secrets.token_urlsafe(24)
    environ = {
        **os.environ,
        "TASKLANE_PROFILE": "local",
        "TASKS_QUEUE": f"e2e-{uuid.uuid4().hex[:12]}",
        # Hosts sharing an id share timer leases: each test host is an app of its own.
        "AzureFunctionsWebHost__hostid": f"e2e-{uuid.uuid4().hex[:12]}",
        # Database 14 of the session's own Valkey, unless the test names another.
        **({} if "VALKEY_URL" in (settings or {}) else {"VALKEY_URL": _private_valkey(14)}),
        "RabbitMQConnection": "amqp://guest:guest@127.0.0.1:5672/",
        "FUNCTIONS_HOST_KEY": key,
        "BACKLOG_SCHEDULE": "*/1 * * * * *",
        "PYTHONUNBUFFERED": "1",
        **(settings or {}),
    }
    if app_dir == ROOT:
        # The app's rabbitMQTrigger listeners declare no queue, as the RabbitMQ extension's do not: this
        # host's own TASKS_QUEUE lanes are declared first, as `python -m local services up` does.
        from local.services.topology import declare_app_queues

        declare_app_queues(environ)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local",
            "start",
            "--no-services",
            "--app-dir",
            str(app_dir),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    host = RunningHost(process, f"http://127.0.0.1:{port}", key, environ)
    host.read_output()
    if wait:
        _wait_healthy(host)
    return host


def _wait_healthy(host: RunningHost, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            host.stop()
            raise AssertionError(f"the host exited ({host.process.returncode}):\n{''.join(host.output)}")
        try:
            if httpx.get(f"{host.base_url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    host.stop()
    raise AssertionError(f"the host did not answer within {timeout}s:\n{''.join(host.output)}")
