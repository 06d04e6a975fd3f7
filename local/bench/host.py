"""The bench's own processes: its host on a port that must be free, and a Valkey of its own.

Whatever happens, both are stopped: :func:`stop_host` in a ``finally``, the Valkey by its context.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from local import services

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".services" / "bench"


def check_port(port: int) -> None:
    """Fail at once, naming the way out, when another process holds the bench's port."""
    with socket.socket() as probe:
        # As the host binds: connections of an earlier run in TIME_WAIT do not make the port taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SystemExit(
                f"error: port {port} is taken ({exc.strerror}): another bench or host is running there; "
                f"stop it, or choose another port: make bench BENCH_ARGS='--port N'"
            ) from None


@contextlib.contextmanager
def own_valkey() -> Iterator[str]:
    """A Valkey server of the bench's own on a free port, gone afterwards: the developer's data is
    never read, written or flushed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    state = Path(tempfile.mkdtemp(prefix="tasklane-bench-valkey-"))
    ports = {"valkey": port}
    quiet = lambda line: None  # noqa: E731
    services.ensure(["valkey"], ports=ports, state_dir=state, report=quiet)
    try:
        yield f"valkey://127.0.0.1:{port}/0"
    finally:
        services.down(["valkey"], ports=ports, state_dir=state, report=quiet)
        shutil.rmtree(state, ignore_errors=True)


def start_host(port: int, key: str, env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra, "FUNCTIONS_HOST_KEY": key, "TASKLANE_LOG_LEVEL": "WARNING"}
    log = open(RESULTS / "host.log", "wb")  # noqa: SIM115 - lives as long as the host process
    return subprocess.Popen(
        [sys.executable, "-m", "local", "start", "--no-services", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(host: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                return
        except OSError:
            if host.poll() is not None:
                raise SystemExit(f"the host exited ({host.returncode}); see {RESULTS / 'host.log'}") from None
            time.sleep(0.1)
    raise SystemExit(f"the host did not answer within 60 s; see {RESULTS / 'host.log'}")


def stop_host(host: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s: the bench never leaves its host running."""
    if host.poll() is None:
        host.send_signal(signal.SIGTERM)
    try:
        host.wait(30)
    except subprocess.TimeoutExpired:
        host.kill()
        host.wait()
