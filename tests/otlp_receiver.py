"""A real OTLP/HTTP receiver for tests: decodes the protobuf export requests the SDK sends.

Listens on a free port (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``) and keeps what arrives as
plain records, so tests assert on spans, metric points and log records as SigNoz would store them.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    resource: dict[str, Any]
    #: (name, attributes) of each event on the span, in order.
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class MetricPoint:
    name: str
    attributes: dict[str, Any]
    value: float
    time_unix_nano: int
    #: How many exemplars (pointers to a trace) the point carries.
    exemplars: int = 0


@dataclass
class ReceivedLog:
    body: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    #: OTLP severity number: 9 INFO, 13 WARN, 17 ERROR.
    severity: int = 0


@dataclass
class Received:
    spans: list[ReceivedSpan] = field(default_factory=list)
    points: list[MetricPoint] = field(default_factory=list)
    logs: list[ReceivedLog] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_traces(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    received = ReceivedSpan(
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        span.name,
                        span.kind,
                        attributes(span.attributes),
                        [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        resource,
                        [(event.name, attributes(event.attributes)) for event in span.events],
                    )
                    with self.lock:
                        self.spans.append(received)

    def add_metrics(self, request: ExportMetricsServiceRequest) -> None:
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        if kind == "histogram":
                            value = float(point.count)
                        else:
                            value = point.as_double if point.HasField("as_double") else float(point.as_int)
                        record = MetricPoint(
                            metric.name,
                            attributes(point.attributes),
                            value,
                            point.time_unix_nano,
                            len(point.exemplars),
                        )
                        with self.lock:
                            self.points.append(record)

    def add_logs(self, request: ExportLogsServiceRequest) -> None:
        for resource_logs in request.resource_logs:
            for scope in resource_logs.scope_logs:
                for record in scope.log_records:
                    received = ReceivedLog(
                        str(_value(record.body)),
                        record.trace_id.hex(),
                        record.span_id.hex(),
                        attributes(record.attributes),
                        record.severity_number,
                    )
                    with self.lock:
                        self.logs.append(received)

    def snapshot_spans(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def snapshot_points(self, name: str) -> list[MetricPoint]:
        with self.lock:
            return [p for p in self.points if p.name == name]

    def snapshot_logs(self) -> list[ReceivedLog]:
        with self.lock:
            return list(self.logs)


_KINDS: dict[str, tuple[Any, Any, str]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse, "add_traces"),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse, "add_metrics"),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse, "add_logs"),
}


class OTLPReceiver:
    """``with OTLPReceiver() as receiver: ... receiver.endpoint ... receiver.received.spans``."""

    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                kind = _KINDS.get(self.path)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if kind is None:
                    self.send_error(404)
                    return
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                request_type, response_type, add = kind
                request = request_type()
                request.ParseFromString(body)
                getattr(received, add)(request)
                answer = response_type().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
