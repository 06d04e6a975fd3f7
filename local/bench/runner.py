"""``python -m local bench``: tasklane against the machine's own queue ceiling, with and without tracing.

Runs on the real RabbitMQ (queues of its own) and a Valkey server of its own (on a free port, stopped
after: a developer's data is never touched), and prints a table and each target met or not met
(:mod:`local.bench.targets`), and writes them all as JSON. In order:

1. the ceiling: the raw queue path, no HTTP and no app (:mod:`local.bench.ceiling`), measured again
   after step 3, so that tasklane is compared with the mean of two runs that bracket it;
2. the app under our host, telemetry off, loaded from ``h2load --h1`` (C, HTTP/1.1 keep-alive, one
   thread: light enough to share this machine): 20,000 single-task POSTs over 64 connections, then
   200 POSTs of 100-task arrays, then open-loop load at half the single-task rate for 10 s
   (:mod:`local.bench.openloop`);
3. the single-task phase again on a fresh host exporting every trace (``always_on``) to an OTLP
   sink of the bench's own (:mod:`local.bench.otlp_sink`);
4. the app's CPU per task without our host, the pipeline driven directly, telemetry off then on
   (:mod:`local.bench.direct`);
5. cold start: import ``function_app`` and index it, median of fresh processes.

Each load is followed by waiting until every accepted task is processed, with progress every few
seconds (:mod:`local.bench.progress`); when nothing is processed for ``--stall`` seconds it gives up
saying how many tasks are missing and where. Every host is stopped whatever happens, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from local.bench import ceiling, direct
from local.bench.host import (
    RESULTS,
    check_port,
    own_valkey,
    peak_rss_mb,
    start_host,
    stop_host,
    wait_healthy,
    without_telemetry,
)
from local.bench.otlp_sink import otlp_sink
from local.bench.phases import Phase, run_open_loop, run_phase
from local.bench.progress import StalledError, whereabouts
from local.bench.report import print_table
from local.bench.targets import judge, ratios

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
QUEUE = "bench-tasks"
#: The parts that may be left out (``--skip``); the single-task phase always runs.
OPTIONAL = ("ceiling", "batch", "openloop", "tracing", "direct")
SINGLE = {"type": "echo", "payload": {"message": "hello"}}


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m local bench", description=__doc__.split("\n")[0])
    found.add_argument("--single", type=int, default=20_000, help="single-task POSTs (default 20000)")
    found.add_argument("--concurrency", type=int, default=64, help="connections for single POSTs (64)")
    found.add_argument("--batches", type=int, default=200, help="batch POSTs (default 200)")
    found.add_argument("--batch-size", type=int, default=100)
    found.add_argument("--batch-concurrency", type=int, default=8)
    found.add_argument(
        "--ceiling", type=int, default=None, help="messages through the raw path (default: --single)"
    )
    found.add_argument("--openloop-seconds", type=float, default=10.0, help="open-loop load time (10)")
    found.add_argument("--openloop-connections", type=int, default=32)
    found.add_argument("--direct-tasks", type=int, default=10_000, help="tasks of the direct bench (10000)")
    found.add_argument(
        "--skip", action="append", default=[], choices=OPTIONAL, help="leave a part out (repeatable)"
    )
    found.add_argument("--port", type=int, default=7181)
    found.add_argument(
        "--stall", type=float, default=30.0, help="give up after this many seconds without progress (30)"
    )
    found.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra settings for the host (repeatable)",
    )
    found.add_argument(
        "--out", type=Path, default=None, help="JSON file (default .services/bench/<time>.json)"
    )
    return found


def _load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_port(args.port)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is missing: apt-get install -y nghttp2-client")
    RESULTS.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_before": _load_average()},
    }
    with own_valkey() as valkey_url:
        env = {
            "TASKLANE_PROFILE": "local",
            # Named by the port, as the host is: two benches at once keep out of each other's queues.
            "TASKS_QUEUE": f"{QUEUE}-{args.port}",
            "RabbitMQConnection": RABBITMQ_URL,
            "VALKEY_URL": valkey_url,
            "TASKS_MAX_BACKLOG": str(10**9),
            "BACKLOG_SCHEDULE": "*/5 * * * * *",
            **dict(kv.split("=", 1) for kv in args.env),
        }
        report["env"] = {k: v for k, v in env.items() if "KEY" not in k}
        _fresh_queues(env)
        raw = [] if "ceiling" in args.skip else [_ceiling(args, valkey_url, "before")]
        report["phases"] = []
        _untraced(args, key, env, report)
        if "tracing" not in args.skip:
            _traced(args, key, env, report)
        if raw:
            raw.append(_ceiling(args, valkey_url, "after"))
            report["ceiling"] = ceiling.combine(raw)
        if "direct" not in args.skip:
            report["direct"] = _direct(args, valkey_url)
    report["cold_start_ms"] = cold_start()
    report["machine"]["load_after"] = _load_average()
    report["ratios"] = ratios(report)
    report["targets"] = judge(report)
    return report


def _fresh_queues(env: dict[str, str]) -> None:
    """Delete the bench's queues left by an earlier run, then declare them as ``services up`` does
    (the host's RabbitMQ triggers declare none, as the extension declares none)."""
    from local.services.topology import declare_app_queues
    from shared.brokers.lanes import PRIORITIES, lane_queue
    from shared.platform.rabbitmq_topology import delete_queue_topology

    async def delete() -> None:
        for priority in PRIORITIES:
            await delete_queue_topology(RABBITMQ_URL, lane_queue(env["TASKS_QUEUE"], priority))

    asyncio.run(delete())
    declare_app_queues(env)


def _ceiling(args: argparse.Namespace, valkey_url: str, when: str) -> ceiling.Ceiling:
    """The raw path once; the bench measures it before tasklane's phases and after, to bracket them."""
    count = args.ceiling or args.single
    print(f"ceiling ({when}): {count:,} messages through RabbitMQ and Valkey, no HTTP, no app", flush=True)
    prefetch = ceiling.host_prefetch(ROOT / "host.json")
    queue = f"{ceiling.QUEUE}-{args.port}"
    measured = ceiling.measure(RABBITMQ_URL, valkey_url, count, args.concurrency, prefetch, queue)
    print(f"  ceiling: {measured.per_second:,.0f} messages/s", flush=True)
    return measured


@contextlib.contextmanager
def _host(args: argparse.Namespace, key: str, env: dict[str, str], log: Path) -> Iterator[int]:
    """A host up and healthy for the block, its pid; a stall inside names what is missing."""
    host = start_host(args.port, key, env, log)
    base = f"http://127.0.0.1:{args.port}"
    try:
        wait_healthy(host, args.port, log)
        try:
            yield host.pid
        except StalledError as exc:
            where = "\n  ".join(whereabouts(base, key))
            raise SystemExit(f"error: gave up: {exc}\n  {where}\n  host log: {log}") from None
    finally:
        stop_host(host)


def _untraced(args: argparse.Namespace, key: str, env: dict[str, str], report: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{args.port}"
    with _host(args, key, env, RESULTS / "host.log") as pid:
        print(f"host up on {base}, telemetry off; single-task phase: {args.single:,} POSTs", flush=True)
        single = run_phase(
            Phase("single", args.single, args.single, args.concurrency), base, key, SINGLE, pid, args.stall
        )
        report["phases"].append(asdict(single))
        if "batch" not in args.skip:
            print(f"batch phase: {args.batches:,} POSTs of {args.batch_size}", flush=True)
            batch = [{"type": "echo", "payload": {"message": i}} for i in range(args.batch_size)]
            phase = Phase("batch", args.batches, args.batches * args.batch_size, args.batch_concurrency)
            report["phases"].append(asdict(run_phase(phase, base, key, batch, pid, args.stall)))
        if "openloop" not in args.skip and single.processed_per_second:
            rate = single.processed_per_second / 2
            seconds = args.openloop_seconds
            print(f"open loop: {rate:,.0f} POSTs/s (half the single-task rate) for {seconds:g} s", flush=True)
            report["openloop"] = run_open_loop(
                base, key, SINGLE, rate, args.openloop_seconds, args.openloop_connections, args.stall
            )
        report["peak_rss_mb"] = peak_rss_mb(pid)


def _traced(args: argparse.Namespace, key: str, env: dict[str, str], report: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{args.port}"
    with otlp_sink() as (endpoint, received):
        traced = {
            **env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_SERVICE_NAME": "tasklane-bench",
        }
        with _host(args, key, traced, RESULTS / "host-traced.log") as pid:
            print(f"host up, every trace exported to {endpoint}; single-task phase again", flush=True)
            phase = Phase("traced", args.single, args.single, args.concurrency)
            report["phases"].append(asdict(run_phase(phase, base, key, SINGLE, pid, args.stall)))
            report["tracing"] = {"peak_rss_mb": peak_rss_mb(pid)}
        report["tracing"]["exported"] = received.as_dict()
        report["tracing"]["endpoint"] = endpoint


def _direct(args: argparse.Namespace, valkey_url: str) -> dict[str, Any]:
    """The direct bench on database 1 of the bench's Valkey, telemetry off, then tracing every task."""
    database = valkey_url.rsplit("/", 1)[0] + "/1"
    print(f"direct: {args.direct_tasks:,} echo tasks accepted and processed without the host", flush=True)
    found = {"off": direct.measure(database, args.direct_tasks, without_telemetry(os.environ))}
    if "tracing" not in args.skip:
        with otlp_sink() as (endpoint, _):
            env = {
                **without_telemetry(os.environ),
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_TRACES_SAMPLER": "always_on",
            }
            found["on"] = direct.measure(database, args.direct_tasks, env)
    return found


def cold_start(runs: int = 7) -> float:
    """Median milliseconds to import ``function_app`` and index it, each in a fresh process.

    The app is loaded by the host's own loader, the one place the host imports an app's script.
    """
    code = (
        "import os, time; from pathlib import Path; from local.host.indexing import load_app; "
        "t = time.perf_counter(); load_app(Path.cwd(), os.environ); print((time.perf_counter() - t) * 1000)"
    )
    env = {**without_telemetry(os.environ), "TASKLANE_PROFILE": "local"}
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return round(statistics.median(samples), 1)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = run(args)
    out = args.out or RESULTS / f"bench-{report['when'].replace(':', '')}.json"
    out.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"JSON: {out}")
    lost = next((t["measured"] for t in report["targets"] if t["target"] == "lost tasks"), 0)
    return 1 if lost else 0
