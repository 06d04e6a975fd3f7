"""The bench's own processes: its host on a port that must be free, and a Valkey of its own.

Whatever happens, both are stopped: :func:`stop_host` in a ``finally``, the Valkey by its context.
The host's CPU time and peak RSS are read from ``/proc`` for it and its worker processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
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


def start_host(
    port: int, key: str, env_extra: dict[str, str], log_file: Path = RESULTS / "host.log"
) -> subprocess.Popen[bytes]:
    """The app under our host, its output in ``log_file``; telemetry only as ``env_extra`` sets it
    (``OTEL_*`` of the developer's shell would turn tracing on in a phase meant without it)."""
    env = {
        **without_telemetry(os.environ),
        **env_extra,
        "FUNCTIONS_HOST_KEY": key,
        "TASKLANE_LOG_LEVEL": "WARNING",
        # No line per invocation or per task: the log would measure the terminal, not the pipeline
        # (app settings override host.json as in Azure).
        "AzureFunctionsJobHost__logging__logLevel__default": "Warning",
        "AzureFunctionsJobHost__logging__logLevel__Function": "Warning",
    }
    log = open(log_file, "wb")  # noqa: SIM115 - lives as long as the host process
    return subprocess.Popen(
        [sys.executable, "-m", "local", "start", "--no-services", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(host: subprocess.Popen[bytes], port: int, log_file: Path = RESULTS / "host.log") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                return
        except OSError:
            if host.poll() is not None:
                raise SystemExit(f"the host exited ({host.returncode}); see {log_file}") from None
            time.sleep(0.1)
    raise SystemExit(f"the host did not answer within 60 s; see {log_file}")


def stop_host(host: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s: the bench never leaves its host running."""
    if host.poll() is None:
        host.send_signal(signal.SIGTERM)
    try:
        host.wait(30)
    except subprocess.TimeoutExpired:
        host.kill()
        host.wait()


def without_telemetry(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` less the ``OTEL_*`` and console-trace settings that would turn telemetry on."""
    return {k: v for k, v in environ.items() if not k.startswith("OTEL_") and k != "TASKLANE_TRACE_CONSOLE"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its child processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for process in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine has been busy so far (``/proc/stat``: user, nice, system,
    irq and softirq): the host, the broker, Valkey and the load generator together."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of ``pid`` and its child processes, summed, in MB."""
    total = 0
    for child in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return round(total / 1024, 1)


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
