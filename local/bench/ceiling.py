"""The machine's queue ceiling: the raw path tasklane is measured against, in the same run.

A publisher process sends persistent messages to a durable queue with publisher confirms, keeping
``in_flight`` publishes waiting for their confirms (as many as the bench's HTTP connections), while a
consumer process, with the prefetch the app's ``host.json`` sets, counts each message in Valkey (one
``HINCRBY`` per message) and acks it. No HTTP, no app: what RabbitMQ, Valkey and the client libraries
cost on this machine. Both sides use aio-pika's AMQP channel underneath, as tasklane's broker and our
host do, on uvloop when it is installed, as the host runs.

The rate is messages over the time from the first publish to the last ack; both processes read the
system's monotonic clock, so their timestamps compare. The bench runs it before tasklane's phases and
after them and compares tasklane with the mean (:func:`combine`).

    python -m local.bench.ceiling consume --amqp URL --valkey URL --queue Q --count N --prefetch P
    python -m local.bench.ceiling publish --amqp URL --queue Q --count N --in-flight C
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import valkey.asyncio as valkey
from aiormq.abc import DeliveredMessage

from local.bench.host import machine_cpu_seconds
from local.bench.loop import run

#: The extension's default prefetch, used when ``host.json`` sets none.
DEFAULT_PREFETCH = 30
QUEUE = "bench-ceiling"
COUNTER = "bench:ceiling"
#: About the size of a tasklane echo envelope (123 bytes with a short message).
BODY = b'{"id":"00000000-0000-0000-0000-000000000000","type":"echo","payload":{"message":"hello"}}'.ljust(128)
#: Seconds the consumer waits for every message before giving up.
PATIENCE = 120.0


@dataclass(frozen=True)
class Ceiling:
    """The raw path's figures: its rate, and the client CPU it took per message on each side."""

    messages: int
    in_flight: int
    prefetch: int
    seconds: float
    per_second: float
    publisher_cpu_us_per_message: float
    consumer_cpu_us_per_message: float
    #: The whole machine's CPU per message: both clients, RabbitMQ and Valkey.
    machine_cpu_us_per_message: float = 0.0


def combine(runs: Sequence[Ceiling]) -> dict[str, Any]:
    """The ceiling the ratios use: the mean rate of ``runs`` (measured before and after tasklane's
    phases), with each run and their spread (max - min over the mean): a wide spread says the machine
    was busy with something else meanwhile, and every figure of the run is as uncertain."""
    rates = [run.per_second for run in runs]
    mean = sum(rates) / len(rates)
    return {
        "per_second": round(mean, 1),
        "spread": round((max(rates) - min(rates)) / mean, 3) if mean else 0.0,
        "publisher_cpu_us_per_message": round(
            sum(r.publisher_cpu_us_per_message for r in runs) / len(runs), 1
        ),
        "consumer_cpu_us_per_message": round(sum(r.consumer_cpu_us_per_message for r in runs) / len(runs), 1),
        "machine_cpu_us_per_message": round(sum(r.machine_cpu_us_per_message for r in runs) / len(runs), 1),
        "runs": [asdict(run) for run in runs],
    }


def host_prefetch(host_json: Path) -> int:
    """``extensions.rabbitMQ.prefetchCount`` of the app's ``host.json``, else the extension's default."""
    try:
        config = json.loads(host_json.read_text())
    except (OSError, ValueError):
        return DEFAULT_PREFETCH
    return int(config.get("extensions", {}).get("rabbitMQ", {}).get("prefetchCount", DEFAULT_PREFETCH))


def measure(
    amqp_url: str, valkey_url: str, messages: int, in_flight: int, prefetch: int, queue: str = QUEUE
) -> Ceiling:
    """Run the consumer and the publisher as processes of their own and time the whole path."""
    run(_fresh_queue(amqp_url, queue))
    role = [sys.executable, "-m", "local.bench.ceiling"]
    common = ["--amqp", amqp_url, "--queue", queue, "--count", str(messages)]
    consumer = subprocess.Popen(
        [*role, "consume", *common, "--valkey", valkey_url, "--prefetch", str(prefetch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit(f"error: the ceiling's consumer did not start: {consumer.communicate()[1]}")
        # From the consumer's readiness: the publisher's start-up (imports) is counted, a few us/message.
        machine_before = machine_cpu_seconds()
        published = _result(
            subprocess.run(
                [*role, "publish", *common, "--in-flight", str(in_flight)],
                capture_output=True,
                text=True,
                check=False,
            ),
            "publisher",
        )
        out, err = consumer.communicate(timeout=PATIENCE + 10)
        machine = machine_cpu_seconds() - machine_before
        consumed = _result(
            subprocess.CompletedProcess(consumer.args, consumer.returncode, out, err), "consumer"
        )
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        run(_delete_queue(amqp_url, queue))
    seconds = consumed["finished"] - published["started"]
    return Ceiling(
        messages,
        in_flight,
        prefetch,
        round(seconds, 3),
        round(messages / seconds, 1),
        round(published["cpu_seconds"] * 1e6 / messages, 1),
        round(consumed["cpu_seconds"] * 1e6 / messages, 1),
        round(machine * 1e6 / messages, 1),
    )


def _result(done: subprocess.CompletedProcess[str], role: str) -> dict[str, float]:
    try:
        found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(
            f"error: the ceiling's {role} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
        ) from None
    return found


async def _fresh_queue(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.declare_queue(queue, durable=True)


async def _delete_queue(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def publish(amqp_url: str, queue: str, count: int, in_flight: int) -> dict[str, float]:
    """Publish ``count`` persistent messages, ``in_flight`` at a time each awaiting its confirm."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        underlay = await channel.get_underlay_channel()
        left = iter(range(count))

        async def sender() -> None:
            for number in left:
                properties = aiormq.spec.Basic.Properties(
                    message_id=str(number), content_type="application/json", delivery_mode=2
                )
                await underlay.basic_publish(BODY, routing_key=queue, properties=properties, mandatory=True)

        cpu, started = time.process_time(), time.monotonic()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
        finished = time.monotonic()
        return {"started": started, "finished": finished, "cpu_seconds": time.process_time() - cpu}


async def consume(amqp_url: str, valkey_url: str, queue: str, count: int, prefetch: int) -> dict[str, float]:
    """Count ``count`` messages in Valkey, one ``HINCRBY`` each, and ack each; says ``ready`` first."""
    client = valkey.Valkey.from_url(valkey_url, max_connections=max(prefetch, 1) + 4)
    await client.delete(COUNTER)
    connection = await aio_pika.connect(amqp_url)
    done = asyncio.Event()
    counted = 0
    finished = 0.0
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        underlay = await channel.get_underlay_channel()

        async def on_message(message: DeliveredMessage) -> None:
            nonlocal counted, finished
            await client.hincrby(COUNTER, "counted", 1)
            assert message.delivery_tag is not None
            await underlay.basic_ack(message.delivery_tag)
            counted += 1
            if counted == count:
                finished = time.monotonic()
                done.set()

        await underlay.basic_consume(queue, on_message, no_ack=False)
        cpu = time.process_time()
        print("ready", flush=True)
        await asyncio.wait_for(done.wait(), PATIENCE)
        cpu_seconds = time.process_time() - cpu
    await client.aclose()
    return {"finished": finished, "cpu_seconds": cpu_seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench.ceiling", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=["publish", "consume"])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--queue", default=QUEUE)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--valkey", default="")
    parser.add_argument("--prefetch", type=int, default=DEFAULT_PREFETCH)
    args = parser.parse_args(argv)
    if args.role == "publish":
        found = run(publish(args.amqp, args.queue, args.count, args.in_flight))
    else:
        found = run(consume(args.amqp, args.valkey, args.queue, args.count, args.prefetch))
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
