"""``python -m local bench``: the pipeline's throughput, latency, losses, memory and cold start.

Runs the app under our host against the real RabbitMQ (a queue of its own) and a Valkey server of
its own (on a free port, stopped after: a developer's data is never touched), loads it from
``h2load --h1`` (C, HTTP/1.1 keep-alive, one thread: light enough to share this machine), and
prints a table and writes JSON. Phases:

1. 20,000 single-task POSTs over 64 keep-alive connections;
2. 200 POSTs of 100-task arrays;

each followed by waiting until every accepted task has been processed, with progress every few
seconds (:mod:`local.bench.progress`); when nothing is processed for ``--stall`` seconds it gives
up saying how many tasks are missing and where. The host is stopped whatever happens, Ctrl-C
included. Figures: accepted/s and accept latency (h2load's per-request log), end-to-end
processed/s (first POST until the last task is done, from Valkey's counters), lost = accepted -
succeeded, the host's peak RSS, and cold start (import ``function_app`` and index it, median of
fresh processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.bench.host import RESULTS, check_port, own_valkey, start_host, stop_host, wait_healthy
from local.bench.progress import StalledError, api, wait_processed, whereabouts

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


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
    end_to_end_seconds: float = 0.0
    processed_per_second: float = 0.0
    succeeded: int = 0
    lost: int = 0
    #: CPU time the host spent per task (user + system, all its processes): robust to other load.
    host_cpu_us_per_task: float = 0.0


def _load(url: str, key: str, body: str, requests: int, concurrency: int) -> dict[str, Any]:
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
            "-n",
            str(requests),
            "-c",
            str(concurrency),
            "-t",
            "1",
            "-d",
            str(body_file),
            "-H",
            "content-type: application/json",
            "-H",
            f"x-functions-key: {key}",
            f"--log-file={log_file}",
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=False)
        finished = re.search(r"finished in ([\d.]+)(m?s)", out.stdout)
        if out.returncode != 0 or finished is None:
            raise SystemExit(f"h2load failed ({out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")
        rows = [line.split("\t") for line in log_file.read_text().splitlines() if line]
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    latencies = sorted(int(row[2]) for row in rows)
    statuses = [int(row[1]) for row in rows]

    def percentile(q: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000, 2) if latencies else 0.0
        )

    return {
        "seconds": seconds,
        "done": len(rows),
        "accepted": sum(1 for status in statuses if status == 202),
        "latency_ms": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)},
    }


def _processed(base: str, key: str) -> int:
    return int(api(base, key, "stats")["totals"]["processed"])


def _cpu_seconds(pid: int) -> float:
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


def _run_phase(
    phase: Phase, base: str, key: str, payload: Any, already: int, host_pid: int, patience: float
) -> Phase:
    cpu_before = _cpu_seconds(host_pid)
    started = time.monotonic()
    load = _load(f"{base}/api/tasks", key, json.dumps(payload), phase.requests, phase.concurrency)
    per_request = len(payload) if isinstance(payload, list) else 1
    phase.non_2xx = phase.requests - load["accepted"]
    phase.accepted = load["accepted"] * per_request
    phase.accept_seconds = round(load["seconds"], 3)
    phase.accepted_per_second = round(phase.accepted / load["seconds"], 1)
    phase.latency_ms = load["latency_ms"]
    print(f"  {phase.name}: {phase.accepted:,} tasks accepted in {phase.accept_seconds:g} s", flush=True)
    processed, finished = wait_processed(
        phase.name,
        lambda: _processed(base, key),
        already + phase.accepted,
        patience=patience,
        deadline=started + 600,
        say=lambda line: print(line, flush=True),
    )
    phase.succeeded = processed - already
    phase.lost = phase.accepted - phase.succeeded
    phase.end_to_end_seconds = round(finished - started, 3)
    phase.processed_per_second = round(phase.succeeded / phase.end_to_end_seconds, 1)
    if phase.succeeded:
        phase.host_cpu_us_per_task = round((_cpu_seconds(host_pid) - cpu_before) * 1e6 / phase.succeeded, 1)
    return phase


def cold_start(runs: int = 7) -> float:
    """Median milliseconds to import ``function_app`` and index it, each in a fresh process.

    The app is loaded by the host's own loader, the one place the host imports an app's script.
    """
    code = (
        "import os, time; from pathlib import Path; from local.host.indexing import load_app; "
        "t = time.perf_counter(); load_app(Path.cwd(), os.environ); print((time.perf_counter() - t) * 1000)"
    )
    env = {**os.environ, "TASKLANE_PROFILE": "local"}
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return round(statistics.median(samples), 1)


def _peak_rss_mb(pid: int) -> float:
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


def _drop_queue(queue: str) -> None:
    """Delete the bench's own queue and its wait and dead-letter queues, left by an earlier run."""
    from shared.platform.rabbitmq_topology import delete_queue_topology

    asyncio.run(delete_queue_topology(RABBITMQ_URL, queue))


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_port(args.port)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install -y nghttp2-client")
    RESULTS.mkdir(parents=True, exist_ok=True)
    queue, key = "bench-tasks", secrets.token_urlsafe(24)
    _drop_queue(queue)
    with own_valkey() as valkey_url:
        env = {
            "TASKLANE_PROFILE": "local",
            "TASKS_QUEUE": queue,
            "VALKEY_URL": valkey_url,
            "TASKS_MAX_BACKLOG": str(10**9),
            "BACKLOG_SCHEDULE": "*/5 * * * * *",
            **dict(kv.split("=", 1) for kv in args.env),
        }
        phases, rss = _measure(args, key, env)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "env": {k: v for k, v in env.items() if "KEY" not in k},
        "phases": [asdict(phase) for phase in phases],
        "peak_rss_mb": rss,
        "cold_start_ms": cold_start(),
    }


def _measure(args: argparse.Namespace, key: str, env: dict[str, str]) -> tuple[list[Phase], float]:
    """Start the host, run both phases, and stop it whatever happens (a stall, Ctrl-C, an error)."""
    base = f"http://127.0.0.1:{args.port}"
    host = start_host(args.port, key, env)
    try:
        wait_healthy(host, args.port)
        print(f"host up on {base}; single-task phase: {args.single:,} POSTs", flush=True)
        try:
            single = _run_phase(
                Phase("single", args.single, args.single, args.concurrency),
                base,
                key,
                {"type": "echo", "payload": {"message": "hello"}},
                0,
                host.pid,
                args.stall,
            )
            print(f"batch phase: {args.batches:,} POSTs of {args.batch_size}", flush=True)
            batches = _run_phase(
                Phase("batch", args.batches, args.batches * args.batch_size, args.batch_concurrency),
                base,
                key,
                [{"type": "echo", "payload": {"message": i}} for i in range(args.batch_size)],
                single.succeeded,
                host.pid,
                args.stall,
            )
        except StalledError as exc:
            where = "\n  ".join(whereabouts(base, key))
            raise SystemExit(
                f"error: gave up: {exc}\n  {where}\n  host log: {RESULTS / 'host.log'}"
            ) from None
        return [single, batches], _peak_rss_mb(host.pid)
    finally:
        stop_host(host)


#: The targets for a 2-core machine: (figure, how to read it from the report, bound, at least?).
TARGETS: tuple[tuple[str, Callable[[dict[str, Any]], float], float, bool], ...] = (
    ("single-task end to end, tasks/s", lambda r: r["phases"][0]["processed_per_second"], 3000, True),
    ("batches end to end, tasks/s", lambda r: r["phases"][1]["processed_per_second"], 15000, True),
    ("single-task p99 accept latency, ms", lambda r: r["phases"][0]["latency_ms"]["p99"], 25, False),
    ("cold start (import + index), ms", lambda r: r["cold_start_ms"], 300, False),
    ("lost tasks", lambda r: sum(p["lost"] for p in r["phases"]), 0, False),
)


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    found = []
    for name, read, bound, at_least in TARGETS:
        value = read(report)
        met = value >= bound if at_least else value <= bound
        found.append(
            {
                "target": name,
                "bound": (">= " if at_least else "<= ") + f"{bound:g}",
                "measured": value,
                "met": met,
            }
        )
    return found


def print_table(report: dict[str, Any]) -> None:
    print(f"\ntasklane bench ({report['machine']['cpus']} cpus, Python {report['machine']['python']})\n")
    header = (
        f"{'phase':<8}{'tasks':>8}{'accepted/s':>12}{'p50 ms':>8}{'p99 ms':>8}{'e2e tasks/s':>13}{'lost':>6}"
        f"{'host CPU us/task':>18}"
    )
    print(header)
    print("-" * len(header))
    for p in report["phases"]:
        print(
            f"{p['name']:<8}{p['accepted']:>8}{p['accepted_per_second']:>12.0f}"
            f"{p['latency_ms'].get('p50', 0):>8.1f}{p['latency_ms'].get('p99', 0):>8.1f}"
            f"{p['processed_per_second']:>13.0f}{p['lost']:>6}{p['host_cpu_us_per_task']:>18.0f}"
        )
    print(
        f"\npeak RSS of the host: {report['peak_rss_mb']} MB; cold start (import + index): "
        f"{report['cold_start_ms']} ms\n"
    )
    for target in report["targets"]:
        mark = "met" if target["met"] else "NOT MET"
        print(f"  {target['target']:<38} {target['bound']:>9}  measured {target['measured']:>9g}  {mark}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local bench", description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=20_000, help="single-task POSTs (default 20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections for single POSTs")
    parser.add_argument("--batches", type=int, default=200, help="batch POSTs (default 200)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=7181)
    parser.add_argument(
        "--stall", type=float, default=30.0, help="give up after this many seconds without progress (30)"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra settings for the host (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default .services/bench/<time>.json)"
    )
    args = parser.parse_args(argv)
    report = run(args)
    report["targets"] = check_targets(report)
    out = args.out or RESULTS / f"bench-{report['when'].replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"JSON: {out}")
    lost = sum(p["lost"] for p in report["phases"])
    return 1 if lost else 0
