"""OpenTelemetry for tasklane: providers configured once per process, and the pipeline's spans and metrics.

:func:`configure` reads the standard ``OTEL_*`` variables. With an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``; SigNoz Cloud needs ``OTEL_EXPORTER_OTLP_HEADERS=signoz-ingestion-key=…``)
it installs tracer, meter and logger providers exporting OTLP over HTTP/protobuf; with
``TASKLANE_TRACE_CONSOLE=1`` it logs one compact line per finished trace. With neither, it installs
nothing and does not import the SDK: :data:`active` stays False and the pipeline skips every call
here, so a task costs one boolean test.
"""

from __future__ import annotations

import contextvars
import importlib.metadata
import logging
import os
import socket
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode

from shared.telemetry import instruments as telemetry_metrics
from shared.telemetry import tracecontext
from shared.telemetry.instruments import record_accepted as record_accepted
from shared.telemetry.instruments import record_outcomes as record_outcomes

if TYPE_CHECKING:
    from shared.brokers.base import Backlog, OutgoingMessage
    from shared.pipeline.envelope import TaskEnvelope
    from shared.store.store import Outcome

log = logging.getLogger(__name__)

#: True once :func:`configure` installed providers; the pipeline tests it before any telemetry call.
active = False

TASK_ID = "tasklane.task.id"
TASK_IDS = "tasklane.task.ids"
TASK_TYPE = "tasklane.task.type"
TRACE_CONSOLE = "TASKLANE_TRACE_CONSOLE"
SPAN_QUEUE_SIZE = 32768

#: The task a log record belongs to (set while a task's span is current).
current_task_id: contextvars.ContextVar[str] = contextvars.ContextVar("tasklane_task_id", default="")

_configured = False
_NO_SPAN: AbstractContextManager[Span] = nullcontext(trace.INVALID_SPAN)
_tracer: trace.Tracer = trace.NoOpTracer()
_meter_provider: Any = None


@dataclass(frozen=True)
class TelemetrySettings:
    """What :func:`configure` needs from the environment; the exporters read the rest of ``OTEL_*``."""

    endpoint: str | None
    console: bool
    sdk_disabled: bool
    service_name: str
    environment: str
    site_name: str | None
    instance: str

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> TelemetrySettings:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        site = env.get("WEBSITE_SITE_NAME") or None
        return cls(
            endpoint=endpoint.strip() or None if endpoint else None,
            console=env.get(TRACE_CONSOLE, "").strip().lower() in ("1", "true", "yes"),
            sdk_disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
            service_name=env.get("OTEL_SERVICE_NAME") or "tasklane",
            environment=env.get("AZURE_FUNCTIONS_ENVIRONMENT") or env.get("TASKLANE_PROFILE") or "local",
            site_name=site,
            instance=env.get("WEBSITE_INSTANCE_ID") or f"{socket.gethostname()}-{os.getpid()}",
        )

    @property
    def enabled(self) -> bool:
        return not self.sdk_disabled and (self.endpoint is not None or self.console)


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Install the providers once per process; True when telemetry is on. Later calls change nothing."""
    global _configured
    if _configured:
        return active
    _configured = True
    settings = TelemetrySettings.from_environ(os.environ if environ is None else environ)
    if settings.enabled:
        _install(settings)
    return active


def resource_attributes(settings: TelemetrySettings) -> dict[str, str]:
    try:
        version = importlib.metadata.version("tasklane")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    attributes = {
        "service.name": settings.service_name,
        "service.version": version,
        "deployment.environment": settings.environment,
        "deployment.environment.name": settings.environment,
        "faas.name": settings.site_name or settings.service_name,
        "faas.instance": settings.instance,
    }
    if settings.site_name:
        attributes |= {"cloud.provider": "azure", "cloud.platform": "azure_functions"}
    return attributes


def _install(settings: TelemetrySettings) -> None:
    global active, _tracer, _meter_provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES, which wins over these defaults.
    resource = Resource.create(resource_attributes(settings))
    tracer_provider = TracerProvider(resource=resource)
    if settings.console:
        from shared.telemetry.console import ConsoleTraceProcessor

        tracer_provider.add_span_processor(ConsoleTraceProcessor())
    if settings.endpoint:
        _install_exporters(resource, tracer_provider)
    trace.set_tracer_provider(tracer_provider)
    _tracer = tracer_provider.get_tracer("tasklane")
    telemetry_metrics.instruments.create(metrics.get_meter("tasklane"))
    _meter_provider = metrics.get_meter_provider()
    logging.setLogRecordFactory(_correlated_record_factory(logging.getLogRecordFactory()))
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            handler.setFormatter(CorrelatedFormatter(handler.formatter))
    active = True
    log.info("Telemetry on: OTLP %s, console traces %s", settings.endpoint or "off", settings.console)


def _install_exporters(resource: Any, tracer_provider: Any) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The SDK's default queue (2,048 spans) overflows within a second at full load and drops
    # spans; a larger one rides out a burst. OTEL_BSP_MAX_QUEUE_SIZE still decides when set.
    queue_size = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else SPAN_QUEUE_SIZE
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), max_queue_size=queue_size))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    with warnings.catch_warnings():
        # Deprecated in favour of a package we do not ship; it still does exactly this job.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=logger_provider)
    handler.addFilter(lambda record: not record.name.startswith(("opentelemetry", "urllib3")))
    logging.getLogger().addHandler(handler)


def _correlated_record_factory(make: Any) -> Any:
    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made: logging.LogRecord = make(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        made.otelTraceID = f"{context.trace_id:032x}" if context.is_valid else "0"
        made.otelSpanID = f"{context.span_id:016x}" if context.is_valid else "0"
        made.task_id = current_task_id.get()
        return made

    return record


class CorrelatedFormatter(logging.Formatter):
    """The console's own format, plus ``[trace … span … task …]`` on a record made inside a span."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        text = self._inner.format(record)
        trace_id = getattr(record, "otelTraceID", "0")
        if trace_id == "0":
            return text
        task = getattr(record, "task_id", "")
        suffix = f" task={task}" if task else ""
        return f"{text} [trace={trace_id} span={getattr(record, 'otelSpanID', '0')}{suffix}]"


def flush_metrics(timeout_millis: int = 5000) -> None:
    """Export the metrics recorded so far now (the timer calls it before returning)."""
    if _meter_provider is not None and hasattr(_meter_provider, "force_flush"):
        _meter_provider.force_flush(timeout_millis)


# --- spans -----------------------------------------------------------------------------------------


@contextmanager
def invocation_span(
    name: str, traceparent: str = "", tracestate: str = "", attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A SERVER span for an HTTP invocation, child of the invocation's trace context when it has one."""
    if not active:
        yield trace.INVALID_SPAN
        return
    parent = tracecontext.as_parent(tracecontext.parse_traceparent(traceparent, tracestate))
    with _tracer.start_as_current_span(name, parent, SpanKind.SERVER, attributes) as span:
        yield span


def valkey_span(operation: str, envelopes: Sequence[TaskEnvelope]) -> AbstractContextManager[Span]:
    """A CLIENT span around one Valkey round trip of the pipeline (a no-op context when off)."""
    if not active:
        return _NO_SPAN
    attributes: dict[str, Any] = {
        "db.system.name": "valkey",
        "db.system": "valkey",
        "db.operation.name": operation,
    }
    if len(envelopes) == 1:
        attributes[TASK_ID] = envelopes[0].id
    else:
        attributes[TASK_IDS] = [e.id for e in envelopes]
    return _tracer.start_as_current_span(f"valkey {operation}", kind=SpanKind.CLIENT, attributes=attributes)


def set_task_ids(span: Span, ids: Sequence[str]) -> None:
    if span.is_recording():
        if len(ids) == 1:
            span.set_attribute(TASK_ID, ids[0])
        else:
            span.set_attribute(TASK_IDS, list(ids))


class ProducerSpans:
    """One PRODUCER span per message sent, its context injected into the message's headers.

    Used as ``with ProducerSpans(system, queue, messages) as traced: send(traced)``; when telemetry
    is off, ``traced`` is ``messages`` itself.
    """

    __slots__ = ("_messages", "_queue", "_spans", "_system")

    def __init__(self, system: str, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        self._system = system
        self._queue = queue
        self._messages = messages
        self._spans: list[Span] = []

    def __enter__(self) -> Sequence[OutgoingMessage]:
        if not active:
            return self._messages
        traced = []
        for message in self._messages:
            span = _tracer.start_span(
                f"send {self._queue}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": self._system,
                    "messaging.operation": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": self._queue,
                    "messaging.message.id": message.id,
                    TASK_ID: message.id,
                },
            )
            self._spans.append(span)
            parent = tracecontext.format_traceparent(span.get_span_context())
            headers = {
                **message.headers,
                tracecontext.TRACEPARENT: parent,
                tracecontext.DIAGNOSTIC_ID: parent,
            }
            state = span.get_span_context().trace_state.to_header()
            if state:
                headers[tracecontext.TRACESTATE] = state
            traced.append(replace(message, headers=headers))
        return traced

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        for span in self._spans:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            span.end()


@contextmanager
def consumer_span(
    system: str, queue: str, headers: Sequence[Mapping[Any, Any] | None], message_ids: Sequence[str]
) -> Iterator[tuple[Span, list[SpanContext | None]]]:
    """The CONSUMER ``process`` span of a delivery, and each message's producer context.

    One message: the span is the producer span's child, so the task's trace continues. Several
    (a Service Bus batch): a span of its own, linked to every producer span.
    """
    producers = [tracecontext.extract(h) for h in headers]
    attributes: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
    }
    parent = None
    links: list[Link] = []
    if len(producers) <= 1 and len(message_ids) <= 1:
        parent = tracecontext.as_parent(producers[0] if producers else None)
        if message_ids and message_ids[0]:
            attributes["messaging.message.id"] = attributes[TASK_ID] = message_ids[0]
    else:
        links = [Link(p) for p in producers if p is not None]
        attributes["messaging.batch.message_count"] = max(len(producers), len(message_ids))
        if message_ids:
            attributes[TASK_IDS] = list(message_ids)
    with _tracer.start_as_current_span(
        f"process {queue}", parent, SpanKind.CONSUMER, attributes, links
    ) as span:
        yield span, producers


def annotate_delivery(envelope: TaskEnvelope) -> None:
    """Name the task on the current (single-message ``process``) span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(TASK_ID, envelope.id)
        span.set_attribute("messaging.message.id", envelope.id)


@contextmanager
def task_span(envelope: TaskEnvelope, producer: SpanContext | None, batch: Span | None) -> Iterator[Span]:
    """The handler span of one task: under ``process``, or in a batch under its own producer span."""
    parent = None
    links: list[Link] = []
    if batch is not None:
        parent = tracecontext.as_parent(producer)
        links = [Link(batch.get_span_context())]
    token = current_task_id.set(envelope.id)
    try:
        with _tracer.start_as_current_span(
            f"task {envelope.type}",
            parent,
            SpanKind.INTERNAL,
            {TASK_ID: envelope.id, TASK_TYPE: envelope.type},
            links,
        ) as span:
            yield span
    finally:
        current_task_id.reset(token)


def describe_outcome(span: Span, outcome: Outcome) -> None:
    if not span.is_recording():
        return
    if outcome.cache_hit is not None:
        span.set_attribute("tasklane.cache.hit", outcome.cache_hit)
    if outcome.error is not None:
        span.set_status(StatusCode.ERROR, outcome.error)
        span.set_attribute("tasklane.task.final", outcome.final)


def record_backlog(backlog: Backlog) -> None:
    """Set the backlog gauges (telemetry on), one point per state the broker reports."""
    if active:
        telemetry_metrics.record_backlog(backlog)
