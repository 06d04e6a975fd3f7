"""A minimal OTLP/HTTP endpoint for the tracing phase: accepts every export and discards it.

The host exports to it as it would to SigNoz (protobuf over HTTP, ``/v1/traces``, ``/v1/metrics``,
``/v1/logs``), so tracing costs the host what it costs in Azure: spans made, batched, encoded and
sent. The sink decodes nothing; it counts requests and bytes per path, which shows that the export
really happened.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: An empty Export*ServiceResponse: every record accepted.
_ACCEPTED = b""


@dataclass
class Received:
    """Requests and bytes per path, as they arrive."""

    requests: Counter[str] = field(default_factory=Counter)
    bytes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, size: int) -> None:
        with self.lock:
            self.requests[path] += 1
            self.bytes[path] += size

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                path: {"requests": n, "bytes": self.bytes[path]} for path, n in sorted(self.requests.items())
            }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects
    server: _Sink

    def do_POST(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        self.rfile.read(size)
        self.server.received.add(self.path, size)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(_ACCEPTED)))
        self.end_headers()
        self.wfile.write(_ACCEPTED)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per export would flood the bench's output."""


class _Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = Received()


@contextlib.contextmanager
def otlp_sink() -> Iterator[tuple[str, Received]]:
    """An OTLP/HTTP endpoint on a free port, served from a thread until the block ends: its base URL
    (``OTEL_EXPORTER_OTLP_ENDPOINT``) and what it received."""
    sink = _Sink()
    serving = threading.Thread(target=sink.serve_forever, name="otlp-sink", daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{sink.server_address[1]}", sink.received
    finally:
        sink.shutdown()
        sink.server_close()
