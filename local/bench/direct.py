"""The app's own CPU per task, without our host: the pipeline driven directly, as in Azure.

What runs in Azure is the app's code under Microsoft's host and worker; our host is not deployed. So
this measures the pipeline alone: :class:`~shared.pipeline.accept.Accepter` (parse, validate, record
as queued, send) and :class:`~shared.pipeline.process.Processor` (decode, status, handler dispatch,
record, settle) against the bench's own Valkey, with the in-memory stub broker in place of RabbitMQ
(as ``tests/test_pipeline.py`` builds them), so neither HTTP nor AMQP code is counted. Accepts run 64
at a time (the bench's connections) inside the hooks' request scope, as the HTTP function runs them;
deliveries are processed one per invocation, 30 at a time (the trigger's prefetch), on asyncio's own
loop, as the Python worker runs. CPU is this process's user + system time; with telemetry on, the
exporter's thread is in it too (spans are flushed before the clock stops). After a warm-up of 1,000
tasks, the tasks are measured in three rounds, and the figure is the median round's.

    python -m local.bench.direct --valkey URL [--tasks N]    (OTEL_* in the environment: tracing on)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from shared import telemetry
from shared.brokers.stub import StubBroker
from shared.pipeline.accept import Accepter
from shared.pipeline.delivery import Delivery, TraceContext, Verdict
from shared.pipeline.hooks import Hooks
from shared.pipeline.process import Processor
from shared.store.store import Store
from shared.tasks import registry

BODY = b'{"type": "echo", "payload": {"message": "hello"}}'
ACCEPT_CONCURRENCY = 64
PROCESS_CONCURRENCY = 30
WARM_UP = 1000
#: Measured rounds after the warm-up; the figure is the median round's.
ROUNDS = 3


async def _side_by_side(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(i)`` for every i below ``count``, ``concurrency`` at a time."""
    left = iter(range(count))

    async def worker() -> None:
        for index in left:
            await one(index)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


@dataclass(frozen=True)
class Timing:
    """One round of one part: its tasks, and the CPU and wall-clock seconds they took."""

    tasks: int
    cpu_seconds: float
    seconds: float

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds * 1e6 / self.tasks


def summarise(accepting: Sequence[Timing], processing: Sequence[Timing]) -> dict[str, Any]:
    """The median round's CPU per task of each part (a burst of other work on the machine spoils one
    round, not the figure), each round's, and the rates of all rounds together."""
    return {
        "tasks": sum(t.tasks for t in processing),
        "accept_cpu_us": round(statistics.median(t.cpu_us for t in accepting), 1),
        "process_cpu_us": round(statistics.median(t.cpu_us for t in processing), 1),
        "accept_cpu_us_rounds": [round(t.cpu_us, 1) for t in accepting],
        "process_cpu_us_rounds": [round(t.cpu_us, 1) for t in processing],
        "accepted_per_second": round(sum(t.tasks for t in accepting) / sum(t.seconds for t in accepting), 1),
        "processed_per_second": round(
            sum(t.tasks for t in processing) / sum(t.seconds for t in processing), 1
        ),
    }


def _flush_spans() -> None:
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()


async def drive(valkey_url: str, tasks: int, hooks: Hooks) -> dict[str, Any]:
    """Accept ``tasks`` echo tasks, then process them; CPU and rate of each part."""
    store = Store(valkey_url)
    await store.client.flushdb()
    broker = StubBroker("bench-direct")
    accepter = Accepter(broker, store, registry, hooks, max_backlog=10**9)
    processor = Processor(store, broker, registry, hooks)
    failures: list[str] = []
    deliveries: list[Delivery] = []

    async def accept(_: int) -> None:
        with hooks.request("/api/tasks", "POST", None) as scope:
            accepted = await accepter.accept(BODY, None, "bench")
            scope.tasks(accepted.ids)
            scope.status(202)

    async def process(index: int) -> None:
        message = deliveries[index]
        (decision,) = await processor.process([message])
        if decision.verdict is not Verdict.COMPLETED:
            failures.append(f"{message.message_id}: {decision.verdict.value} {decision.reason}")

    async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> Timing:
        cpu, started = time.process_time(), time.perf_counter()
        await _side_by_side(count, concurrency, one)
        _flush_spans()
        return Timing(count, time.process_time() - cpu, time.perf_counter() - started)

    rounds: list[tuple[Timing, Timing]] = []
    for count in (WARM_UP, *[tasks // ROUNDS] * ROUNDS):
        accepting = await timed(count, ACCEPT_CONCURRENCY, accept)
        # As a trigger hands them over: the trace context the send hook put in the headers.
        deliveries[:] = [
            Delivery(m.body, m.id, trace=TraceContext.from_headers(m.headers)) for m in broker.messages
        ]
        broker.messages.clear()
        rounds.append((accepting, await timed(count, PROCESS_CONCURRENCY, process)))
    figures = summarise(
        [accepting for accepting, _ in rounds[1:]], [processing for _, processing in rounds[1:]]
    )
    figures["not_completed"] = len(failures)
    await store.client.flushdb()
    await store.close()
    if failures:
        raise SystemExit(f"{len(failures)} tasks did not complete, e.g. {failures[0]}")
    return figures


def measure(valkey_url: str, tasks: int, env: Mapping[str, str]) -> dict[str, Any]:
    """Run the direct bench in a fresh process with ``env`` (OTEL_* there turns tracing on)."""
    done = subprocess.run(
        [sys.executable, "-m", "local.bench.direct", "--valkey", valkey_url, "--tasks", str(tasks)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(
            f"error: the direct bench failed ({done.returncode}): {done.stderr[-800:]}"
        ) from None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench.direct", description=__doc__.split("\n")[0])
    parser.add_argument("--valkey", required=True, help="a Valkey database the bench may empty")
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args(argv)
    # Telemetry as the composition root configures it: from OTEL_* (silent hooks without an endpoint).
    hooks = telemetry.configure()
    found = asyncio.run(drive(args.valkey, args.tasks, hooks))
    found["tracing"] = type(hooks) is not Hooks
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
