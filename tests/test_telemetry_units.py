"""Telemetry without a host: trace-context parsing, batch links, the console view, the off switch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import telemetry
from shared.brokers.base import OutgoingMessage
from shared.brokers.servicebus import ServiceBusBroker
from shared.brokers.stub import StubBroker
from shared.pipeline.delivery import Delivery, TraceContext
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.process import Processor
from shared.platform.servicebus_connection import ServiceBusConnection
from shared.store.store import Store
from shared.tasks import registry
from shared.telemetry import instruments as telemetry_metrics
from shared.telemetry import tracecontext
from shared.telemetry.console import ConsoleTraceProcessor
from shared.telemetry.hooks import TracingHooks
from tests.doubles.servicebus_amqp import KEY, FakeServiceBus
from tests.hosting import ROOT

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"traceparent": f"00-{TRACE}-{SPAN}-01"}, (TRACE, SPAN, 1)),
        ({"traceparent": f"00-{TRACE}-{SPAN}-00".encode()}, (TRACE, SPAN, 0)),  # AMQP bytes
        ({"Diagnostic-Id": f"00-{TRACE}-{SPAN}-01"}, (TRACE, SPAN, 1)),
        (
            {"traceparent": f"00-{TRACE}-{SPAN}-01", "Diagnostic-Id": f"00-{'1' * 32}-{SPAN}-01"},
            (TRACE, SPAN, 1),
        ),
        ({"Diagnostic-Id": "|abc.1."}, None),  # legacy hierarchical id: no W3C ids
        ({"traceparent": f"00-{'0' * 32}-{SPAN}-01"}, None),
        ({"traceparent": f"00-{TRACE}-{'0' * 16}-01"}, None),
        ({"traceparent": f"ff-{TRACE}-{SPAN}-01"}, None),
        ({"traceparent": f"00-{TRACE.upper()}-{SPAN}-01"}, None),
        ({"traceparent": f"00-{TRACE}-{SPAN}-01-extra"}, None),
        ({"traceparent": f"01-{TRACE}-{SPAN}-01-future"}, (TRACE, SPAN, 1)),
        ({}, None),
    ],
)
def test_one_extractor_reads_traceparent_or_diagnostic_id(
    headers: dict[str, object], expected: tuple[str, str, int] | None
) -> None:
    found = tracecontext.parse(TraceContext.from_headers(headers))
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (f"{found.trace_id:032x}", f"{found.span_id:016x}", int(found.trace_flags)) == expected
        assert found.is_remote


def test_tracestate_travels_with_the_parent() -> None:
    found = tracecontext.parse(TraceContext.of(f"00-{TRACE}-{SPAN}-01", "vendor=1"))
    assert found is not None
    assert found.trace_state.to_header() == "vendor=1"
    assert tracecontext.format_traceparent(found) == f"00-{TRACE}-{SPAN}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Where the :func:`hooks` fixture's spans are kept, in memory (no global provider)."""
    return InMemorySpanExporter()


@pytest.fixture
def hooks(spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> TracingHooks:
    """Telemetry switched on for this test only: the tracing hooks over an in-memory tracer."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instruments = telemetry_metrics.Instruments()
    instruments.create(meters.get_meter("test"))
    monkeypatch.setattr(telemetry_metrics, "instruments", instruments)
    return TracingHooks(meters, provider.get_tracer("test"))


async def test_a_batch_links_every_producer_and_each_task_stays_in_its_trace(
    hooks: TracingHooks, spans: InMemorySpanExporter, store: Store
) -> None:
    # Given two messages sent from two different traces (a Service Bus batch)
    producers = [f"00-{n * 32}-{n * 16}-01" for n in ("a", "b")]
    envelopes = [TaskEnvelope(f"task-{n}", "echo", {"n": n}, 0.0) for n in range(2)]
    broker = StubBroker("tasks")
    broker.system = "servicebus"
    processor = Processor(store, broker, registry, hooks)
    # When they are processed as one batch
    await processor.process(
        [
            Delivery(e.encode(), e.id, trace=TraceContext.from_headers({"Diagnostic-Id": p}))
            for e, p in zip(envelopes, producers, strict=True)
        ]
    )
    # Then the process span is linked to both producers, and each handler span continues its task's trace
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    (process,) = [s for s in finished if s.kind == SpanKind.CONSUMER]
    assert {f"{link.context.trace_id:032x}" for link in process.links} == {"a" * 32, "b" * 32}
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "servicebus"
    assert process.attributes["messaging.batch.message_count"] == 2
    handlers = {
        s.attributes["tasklane.task.id"]: s for s in finished if s.name == "task echo" and s.attributes
    }
    assert f"{handlers['task-0'].context.trace_id:032x}" == "a" * 32
    assert f"{handlers['task-1'].context.trace_id:032x}" == "b" * 32
    assert all(h.links[0].context.span_id == process.context.span_id for h in handlers.values())


def test_the_console_view_prints_one_line_per_local_trace(caplog: pytest.LogCaptureFixture) -> None:
    # Given a provider with the console view
    provider = TracerProvider()
    provider.add_span_processor(ConsoleTraceProcessor())
    tracer = provider.get_tracer("test")
    # When a root span with a child ends
    with (
        caplog.at_level("INFO", logger="tasklane.traces"),
        tracer.start_as_current_span("POST /api/tasks"),
        tracer.start_as_current_span("send tasks", attributes={"tasklane.task.id": "t-1"}),
    ):
        pass
    # Then one line names the trace, both spans and the task
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tasklane.traces"]
    assert line.startswith("trace ")
    assert "POST /api/tasks" in line
    assert "send tasks" in line
    assert "(task t-1)" in line


def test_without_an_endpoint_nothing_is_installed() -> None:
    # Given no OTEL endpoint and no console option, When the app's composition root runs
    code = (
        "import json, sys, function_app\n"
        "from opentelemetry import trace\n"
        "from shared.pipeline import root\n"
        "print(json.dumps([type(root.hooks()).__name__, 'opentelemetry.sdk.trace' in sys.modules,"
        " type(trace.get_tracer_provider()).__name__]))\n"
    )
    environ = {"PATH": "/usr/bin:/bin", "TASKLANE_PROFILE": "local", "TASKS_QUEUE": "tasks"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    # Then the pipeline gets the silent hooks, the SDK is not even imported, and nothing is printed
    assert json.loads(done.stdout) == ["Hooks", False, "ProxyTracerProvider"]
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"TASKLANE_TRACE_CONSOLE": "1"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_telemetry_is_on_with_an_endpoint_or_the_console(environ: dict[str, str], enabled: bool) -> None:
    assert telemetry.TelemetrySettings.from_environ(environ).enabled is enabled


@pytest.mark.parametrize(
    ("text", "level"),
    [("", logging.WARNING), ("info", logging.INFO), (" DEBUG ", logging.DEBUG), ("ERROR", logging.ERROR)],
)
def test_the_log_export_level_is_warning_unless_set(text: str, level: int) -> None:
    settings = telemetry.TelemetrySettings.from_environ({"TASKLANE_OTLP_LOG_LEVEL": text})
    assert settings.log_export_level == level


def test_an_unknown_log_export_level_keeps_the_default_and_names_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert telemetry.log_export_level("chatty") == logging.WARNING
    assert "TASKLANE_OTLP_LOG_LEVEL='chatty' is not a level" in caplog.text


def test_a_valkey_round_trip_is_an_event_on_the_current_span(
    hooks: TracingHooks, spans: InMemorySpanExporter
) -> None:
    # Given a request span, When two round trips are made in it, the second failing
    with hooks.request("/api/tasks", "POST", None):
        with hooks.store_call("record_accepted"):
            pass
        with pytest.raises(ConnectionError), hooks.store_call("begin"):
            raise ConnectionError("lost")
    # Then there is one span, with an event per round trip: its operation, duration, and error type
    (span,) = spans.get_finished_spans()
    names = [event.name for event in span.events]
    assert names == ["valkey record_accepted", "valkey begin"]
    ok, failed = (dict(event.attributes or {}) for event in span.events)
    assert ok["db.system.name"] == "valkey"
    assert ok["db.operation.name"] == "record_accepted"
    assert ok["tasklane.valkey.duration_ms"] >= 0
    assert "error.type" not in ok
    assert failed["error.type"] == "ConnectionError"
    assert span.start_time is not None
    assert span.start_time <= span.events[0].timestamp <= span.events[1].timestamp


def test_a_valkey_round_trip_outside_any_span_records_nothing(hooks: TracingHooks) -> None:
    with hooks.store_call("reconcile"):
        pass
    assert not trace.get_current_span().is_recording()


def test_resource_names_the_app_and_azure_where_it_runs() -> None:
    settings = telemetry.TelemetrySettings.from_environ(
        {
            "WEBSITE_SITE_NAME": "func-tasklane",
            "WEBSITE_INSTANCE_ID": "abc",
            "AZURE_FUNCTIONS_ENVIRONMENT": "Production",
        }
    )
    attributes = telemetry.resource_attributes(settings)
    assert attributes["cloud.provider"] == "azure"
    assert attributes["faas.name"] == "func-tasklane"
    assert attributes["faas.instance"] == "abc"
    assert attributes["deployment.environment"] == "Production"


async def test_a_service_bus_send_is_a_producer_span_whose_context_travels_in_the_properties(
    hooks: TracingHooks, spans: InMemorySpanExporter
) -> None:
    # Given a Service Bus queue (the SDK against an AMQP double) and a task sent inside a request span
    async with FakeServiceBus({"tasks"}) as bus:
        broker = ServiceBusBroker(
            ServiceBusConnection.from_connection_string(bus.connection_string(KEY)), "tasks", retry_total=0
        )
        caller = TraceContext.of(f"00-{TRACE}-{SPAN}-01")
        with hooks.request("/api/tasks", "POST", caller):
            request = trace.get_current_span().get_span_context()
            # When it is sent through the sending hook, as the accepter sends
            messages = [OutgoingMessage("task-1", b"{}")]
            with hooks.sending(broker.system, broker.queue, messages) as traced:
                await broker.send_batch(traced)
        await broker.close()
        received = bus.messages[0].application_properties
    # Then the send is a producer span under the request, with the messaging attributes
    (send,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert send.parent is not None
    assert send.parent.span_id == request.span_id
    expected_attributes = {
        "messaging.system": "servicebus",
        "messaging.operation": "send",
        "messaging.destination.name": "tasks",
        "messaging.message.id": "task-1",
        "tasklane.task.id": "task-1",
    }
    assert dict(send.attributes or {}).items() >= expected_attributes.items()
    # And the message carries its context as traceparent and Diagnostic-Id, which the extractor reads
    expected = f"00-{TRACE}-{send.context.span_id:016x}-01"
    assert received == {"traceparent": expected, "Diagnostic-Id": expected}
    found = tracecontext.parse(TraceContext.from_headers(received))
    assert found is not None
    assert found.span_id == send.context.span_id


def test_console_lines_inside_a_span_name_the_trace_span_and_task(hooks: TracingHooks) -> None:
    # Given the console handler's format wrapped, and records made with the correlation fields
    formatter = telemetry.CorrelatedFormatter(logging.Formatter("%(levelname)s %(message)s"))
    make = telemetry._correlated_record_factory(logging.LogRecord)
    envelope = TaskEnvelope("task-7", "echo", {}, 0.0)
    outside = make("x", logging.INFO, __file__, 1, "before", (), None)
    # When a record is made inside a task's span
    with (
        hooks.processing("stub", "tasks", [Delivery(envelope.encode(), envelope.id)]) as scope,
        scope.running(envelope, 0),
    ):
        span = trace.get_current_span()
        inside = make("x", logging.WARNING, __file__, 1, "Task %s failed", ("task-7",), None)
    # Then its line ends with the trace, span and task; a record outside any span is unchanged
    context = span.get_span_context()
    assert formatter.format(inside) == (
        f"WARNING Task task-7 failed [trace={context.trace_id:032x} span={context.span_id:016x} task=task-7]"
    )
    assert formatter.format(outside) == "INFO before"
