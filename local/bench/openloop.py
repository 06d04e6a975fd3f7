"""Open-loop load: requests sent on a fixed schedule, whether or not earlier ones have been answered.

A closed-loop client (h2load's ``-c``) sends a connection's next request only when the last one is
answered, so a slow answer delays the requests behind it and their wait is never counted. Here
request ``i`` is due at ``start + i / rate``; it goes out on an idle keep-alive connection (or waits
for one), and its latency runs from when it was due to its answer, so queueing anywhere (the host, a
busy connection, this generator) counts. h2load's ``--rps`` would be lighter, but h2load 1.52 ignores
it under ``--h1``; this generator runs in a process of its own on uvloop, and reports its own CPU and
how late it sent (``send_lag_ms``), so its share is visible.

    python -m local.bench.openloop --url URL --key KEY --body-file F --rate R --seconds S [--connections C]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from local.bench.latency import summary_ms
from local.bench.loop import run

#: Seconds to wait for the last answers once every request is out.
DRAIN = 30.0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self, load: _Schedule) -> None:
        self._load = load
        self._buffer = bytearray()
        self.transport: asyncio.WriteTransport | None = None
        self.current = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio.Transport
        self._load.ready(self)

    def send(self, index: int, request: bytes) -> None:
        assert self.transport is not None
        self.current = index
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        status = parse_response(self._buffer)
        if status is not None:
            self._load.on_answer(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._load.lost(self)


def parse_response(buffer: bytearray) -> int | None:
    """The status of the complete response at the start of ``buffer`` (removed from it), or None
    while it is incomplete. Responses carry ``content-length`` (the host never chunks a 202)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    status = int(lines[0][9:12])
    del buffer[: end + 4 + length]
    return status


def request_bytes(url: str, key: str, body: bytes) -> bytes:
    """The POST, complete, as it goes on the wire every time."""
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
        f"x-functions-key: {key}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Schedule:
    """Requests due at ``start + i / rate``, each sent on an idle connection or, with none idle, on the
    next one that frees; a connection the host closes (its keep-alive timeout) is replaced.

    Times are ``time.monotonic()``: uvloop's ``loop.time()`` is in whole milliseconds, cached per turn.
    """

    def __init__(self, address: tuple[str, int], request: bytes, rate: float, total: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._address, self._request, self.rate, self.total = address, request, rate, total
        self.due, self.sent = [0.0] * total, [0.0] * total
        self.answered, self.statuses = [0.0] * total, [0] * total
        self._idle: deque[_Connection] = deque()
        self._waiting: deque[int] = deque()
        self.replaced = 0
        self._connecting: set[asyncio.Task[None]] = set()
        self._count = 0
        self.finished = self._loop.create_future()

    async def connect(self, connections: int) -> None:
        for _ in range(connections):
            await self._connect()

    async def _connect(self) -> None:
        await self._loop.create_connection(lambda: _Connection(self), *self._address)

    def ready(self, connection: _Connection) -> None:
        if self._waiting:
            self._send(self._waiting.popleft(), connection)
        else:
            self._idle.append(connection)

    def _send(self, index: int, connection: _Connection) -> None:
        self.sent[index] = time.monotonic()
        connection.send(index, self._request)

    def on_answer(self, connection: _Connection, status: int) -> None:
        index, connection.current = connection.current, -1
        if index < 0:  # nothing was asked on it
            return
        self.answered[index], self.statuses[index] = time.monotonic(), status
        self._count += 1
        if connection.transport is not None:
            self.ready(connection)
        if self._count == self.total and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, connection: _Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
        if connection.current >= 0:
            self.on_answer(connection, -1)
        if self._waiting or self._count < self.total:
            self.replaced += 1
            # A refused connect leaves the waiting requests unanswered, which the figures show.
            connecting = self._loop.create_task(self._connect())
            self._connecting.add(connecting)
            connecting.add_done_callback(self._connecting.discard)

    async def run(self) -> float:
        """Send every request on its schedule; the time (monotonic) it was due to start."""
        start = time.monotonic() + 0.05
        for index in range(self.total):
            self.due[index] = start + index / self.rate
            delay = self.due[index] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._idle:
                self._send(index, self._idle.popleft())
            else:
                self._waiting.append(index)
        with contextlib.suppress(TimeoutError):  # the unanswered show as answered < requests
            await asyncio.wait_for(asyncio.shield(self.finished), DRAIN)
        return start

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()


async def offer(url: str, request: bytes, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """Send ``rate * seconds`` requests on schedule; the figures of their answers."""
    parts = urlsplit(url)
    load = _Schedule((parts.hostname or "127.0.0.1", parts.port or 80), request, rate, round(rate * seconds))
    await load.connect(connections)
    cpu = time.process_time()
    start = await load.run()
    cpu_seconds = time.process_time() - cpu
    load.close()
    done = [i for i in range(load.total) if load.answered[i]]
    elapsed = max(load.answered[i] for i in done) - start if done else 0.0
    return {
        "requests": load.total,
        "offered_per_second": round(rate, 1),
        "achieved_per_second": round(len(done) / elapsed, 1) if elapsed else 0.0,
        "answered": len(done),
        "statuses": {str(k): v for k, v in Counter(load.statuses[i] for i in done).items()},
        "accepted": sum(1 for i in done if load.statuses[i] == 202),
        "latency_ms": summary_ms([round((load.answered[i] - load.due[i]) * 1e6) for i in done]),
        "send_lag_ms": summary_ms([round((load.sent[i] - load.due[i]) * 1e6) for i in done]),
        # From when each went out: what a closed-loop client would have reported.
        "from_sent_ms": summary_ms([round((load.answered[i] - load.sent[i]) * 1e6) for i in done]),
        "connections": connections,
        "connections_replaced": load.replaced,
        "generator_cpu_percent": round(100 * cpu_seconds / elapsed, 1) if elapsed else 0.0,
    }


def measure(url: str, key: str, body: str, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """Run the generator in a process of its own (its CPU apart from the bench's); its figures."""
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.bench.openloop",
            "--url",
            url,
            "--key",
            key,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
            "--body-file",
            "-",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as generator:
        out, err = generator.communicate(body, timeout=seconds + DRAIN + 30)
    try:
        found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(
            f"error: the open-loop generator failed ({generator.returncode}): {err[-800:]}"
        ) from None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local.bench.openloop", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--body-file", required=True, help="the request body; - for standard input")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    body = sys.stdin.buffer.read() if args.body_file == "-" else Path(args.body_file).read_bytes()
    request = request_bytes(args.url, args.key, body)
    found = run(offer(args.url, request, args.rate, args.seconds, args.connections))
    print(json.dumps(found), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
