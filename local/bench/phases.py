"""The phases run against the app under our host: closed-loop load from h2load, open-loop load from
:mod:`local.bench.openloop`, each followed by waiting until every accepted task is processed.

End to end runs from the first request until Valkey's counters show the last task processed
(polled every 50 ms through ``/api/stats``); the host's CPU per task covers that whole span.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.bench import openloop
from local.bench.host import cpu_seconds, machine_cpu_seconds
from local.bench.latency import summary_ms
from local.bench.progress import api, wait_processed

#: Seconds a phase may take, load and processing together, before it gives up.
PHASE_DEADLINE = 600


@dataclass
class Phase:
    name: str
    requests: int
    tasks: int
    concurrency: int
    accepted: int = 0
    non_2xx: int = 0
    accept_seconds: float = 0.0
    accepted_per_second: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: Responses by status (-1: the request failed without one), as h2load logged them.
    statuses: dict[str, int] = field(default_factory=dict)
    end_to_end_seconds: float = 0.0
    processed_per_second: float = 0.0
    succeeded: int = 0
    lost: int = 0
    #: CPU time the host spent per task (user + system, all its processes): robust to other load.
    host_cpu_us_per_task: float = 0.0
    #: CPU time the whole machine spent per task: the host, RabbitMQ, Valkey and h2load together.
    machine_cpu_us_per_task: float = 0.0


def closed_loop(url: str, key: str, body: str, requests: int, concurrency: int) -> dict[str, Any]:
    """Send exactly ``requests`` POSTs of ``body`` over ``concurrency`` HTTP/1.1 keep-alive connections.

    h2load (``--h1``) logs every request's status and latency, so percentiles are exact, not read
    off a histogram; one thread of C keeps the load generator's share of the machine small.
    """
    with tempfile.TemporaryDirectory() as scratch:
        body_file, log_file = Path(scratch) / "body.json", Path(scratch) / "requests.log"
        body_file.write_text(body)
        command = [
            "h2load",
            "--h1",
            *("-n", str(requests), "-c", str(concurrency), "-t", "1", "-d", str(body_file)),
            *("-H", "content-type: application/json", "-H", f"x-functions-key: {key}"),
            f"--log-file={log_file}",
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        finished = re.search(r"finished in ([\d.]+)(m?s)", out.stdout)
        if out.returncode != 0 or finished is None:
            raise SystemExit(f"h2load failed ({out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")
        rows = [line.split("\t") for line in log_file.read_text().splitlines() if line]
    return {
        "seconds": float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1),
        "accepted": sum(1 for row in rows if row[1] == "202"),
        "statuses": dict(Counter(row[1] for row in rows)),
        "latency_ms": summary_ms([int(row[2]) for row in rows]),
    }


def processed(base: str, key: str) -> int:
    return int(api(base, key, "stats")["totals"]["processed"])


def _wait(name: str, base: str, key: str, target: int, patience: float, started: float) -> tuple[int, float]:
    return wait_processed(
        name,
        lambda: processed(base, key),
        target,
        patience=patience,
        deadline=started + PHASE_DEADLINE,
        say=lambda line: print(line, flush=True),
    )


def run_phase(phase: Phase, base: str, key: str, payload: Any, host_pid: int, patience: float) -> Phase:
    """Load the host with ``phase.requests`` POSTs of ``payload``, then wait for every task."""
    already = processed(base, key)
    cpu_before, machine_before = cpu_seconds(host_pid), machine_cpu_seconds()
    started = time.monotonic()
    load = closed_loop(f"{base}/api/tasks", key, json.dumps(payload), phase.requests, phase.concurrency)
    per_request = len(payload) if isinstance(payload, list) else 1
    phase.non_2xx = phase.requests - load["accepted"]
    phase.accepted = load["accepted"] * per_request
    phase.accept_seconds = round(load["seconds"], 3)
    phase.accepted_per_second = round(phase.accepted / load["seconds"], 1)
    phase.latency_ms = load["latency_ms"]
    phase.statuses = load["statuses"]
    print(f"  {phase.name}: {phase.accepted:,} tasks accepted in {phase.accept_seconds:g} s", flush=True)
    done, finished = _wait(phase.name, base, key, already + phase.accepted, patience, started)
    phase.succeeded = done - already
    phase.lost = phase.accepted - phase.succeeded
    phase.end_to_end_seconds = round(finished - started, 3)
    phase.processed_per_second = round(phase.succeeded / phase.end_to_end_seconds, 1)
    if phase.succeeded:
        phase.host_cpu_us_per_task = round((cpu_seconds(host_pid) - cpu_before) * 1e6 / phase.succeeded, 1)
        machine = machine_cpu_seconds() - machine_before
        phase.machine_cpu_us_per_task = round(machine * 1e6 / phase.succeeded, 1)
    return phase


def run_open_loop(
    base: str, key: str, payload: Any, rate: float, seconds: float, connections: int, patience: float
) -> dict[str, Any]:
    """Offer ``rate`` requests a second for ``seconds`` on schedule; the latencies, then wait for every
    accepted task to be processed (``lost`` counts those that never were)."""
    already = processed(base, key)
    started = time.monotonic()
    found = openloop.measure(f"{base}/api/tasks", key, json.dumps(payload), rate, seconds, connections)
    done, _ = _wait("open loop", base, key, already + found["accepted"], patience, started)
    found["lost"] = found["accepted"] - (done - already)
    return found
