"""The pipeline's hooks for telemetry: :class:`MetricsHooks` records the metrics, :class:`TracingHooks`
adds OpenTelemetry spans on top. :func:`shared.telemetry.configure` picks one (or the silent base).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode

from shared.brokers.base import Backlog, OutgoingMessage
from shared.pipeline.delivery import DIAGNOSTIC_ID, TRACEPARENT, TRACESTATE, Delivery, TraceContext
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.hooks import Hooks, ProcessScope, RequestScope, TaskScope
from shared.pipeline.outcome import Outcome
from shared.telemetry import instruments
from shared.telemetry.tracecontext import as_parent, format_traceparent, parse

TASK_ID = "tasklane.task.id"
TASK_IDS = "tasklane.task.ids"
TASK_TYPE = "tasklane.task.type"
#: A Valkey round trip's duration, on its event (milliseconds).
STORE_DURATION = "tasklane.valkey.duration_ms"


class MetricsHooks(Hooks):
    """Counts accepted and processed tasks, times them, and sets the backlog gauges."""

    def __init__(self, meter_provider: Any) -> None:
        self._meter_provider = meter_provider

    def accepted(self, envelopes: Sequence[TaskEnvelope]) -> None:
        instruments.record_accepted(envelopes)

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        instruments.record_outcomes(outcomes)

    def backlog(self, backlog: Backlog) -> None:
        instruments.record_backlog(backlog)
        # The Functions host exports no metrics in OpenTelemetry mode, and a Flex Consumption instance
        # may be frozen right after the timer returns: export now.
        if hasattr(self._meter_provider, "force_flush"):
            self._meter_provider.force_flush(5000)


class TracingHooks(MetricsHooks):
    """One trace per task: HTTP → send → process → task, with an event per Valkey round trip."""

    def __init__(self, meter_provider: Any, tracer: trace.Tracer) -> None:
        super().__init__(meter_provider)
        self._tracer = tracer

    def trace_id(self) -> str:
        context = trace.get_current_span().get_span_context()
        return f"{context.trace_id:032x}" if context.is_valid else ""

    def request(
        self, route: str, method: str, trace_context: TraceContext | None
    ) -> AbstractContextManager[RequestScope]:
        return self._request(route, method, trace_context)

    @contextmanager
    def _request(self, route: str, method: str, trace_context: TraceContext | None) -> Iterator[RequestScope]:
        attributes = {"http.request.method": method, "http.route": route}
        with self._tracer.start_as_current_span(
            f"{method} {route}", as_parent(parse(trace_context)), SpanKind.SERVER, attributes
        ) as span:
            yield _SpanRequest(span)

    def sending(
        self, system: str, queue: str, messages: Sequence[OutgoingMessage]
    ) -> AbstractContextManager[Sequence[OutgoingMessage]]:
        return self._sending(system, queue, messages)

    @contextmanager
    def _sending(
        self, system: str, queue: str, messages: Sequence[OutgoingMessage]
    ) -> Iterator[Sequence[OutgoingMessage]]:
        spans: list[Span] = []
        traced: list[OutgoingMessage] = []
        for message in messages:
            span = self._tracer.start_span(
                f"send {queue}",
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": system,
                    "messaging.operation": "send",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": queue,
                    "messaging.message.id": message.id,
                    TASK_ID: message.id,
                },
            )
            spans.append(span)
            context = span.get_span_context()
            parent = format_traceparent(context)
            headers = {**message.headers, TRACEPARENT: parent, DIAGNOSTIC_ID: parent}
            state = context.trace_state.to_header()
            if state:
                headers[TRACESTATE] = state
            traced.append(replace(message, headers=headers))
        try:
            yield traced
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for span in spans:
                span.end()

    def store_call(self, operation: str) -> AbstractContextManager[None]:
        # An event on the span around it (the request's, or the process span), not a span of its
        # own: the task's spans already name the tasks, and a child span per round trip cost more
        # than the round trip (its ids, context switch, processor and export).
        return _StoreEvent(operation)

    def processing(
        self, system: str, queue: str, deliveries: Sequence[Delivery]
    ) -> AbstractContextManager[ProcessScope]:
        return self._processing(system, queue, deliveries)

    @contextmanager
    def _processing(self, system: str, queue: str, deliveries: Sequence[Delivery]) -> Iterator[ProcessScope]:
        # Each delivery's trace context is parsed here, once.
        producers = [parse(d.trace) for d in deliveries]
        attributes: dict[str, Any] = {
            "messaging.system": system,
            "messaging.operation": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": queue,
        }
        parent = None
        links: list[Link] = []
        if len(deliveries) == 1:
            # One message: the process span continues the producer's trace.
            parent = as_parent(producers[0])
        else:
            # A batch: a span of its own, linked to every producer span.
            links = [Link(p) for p in producers if p is not None]
            attributes["messaging.batch.message_count"] = len(deliveries)
            attributes[TASK_IDS] = [d.message_id for d in deliveries]
        with self._tracer.start_as_current_span(
            f"process {queue}", parent, SpanKind.CONSUMER, attributes, links
        ) as span:
            yield _TracedProcess(self._tracer, span, producers)


class _StoreEvent:
    """``valkey <operation>`` as an event on the current span, stamped when the round trip began, with
    its duration and, when it failed, the error's type."""

    __slots__ = ("_operation", "_started")

    def __init__(self, operation: str) -> None:
        self._operation = operation
        self._started = 0

    def __enter__(self) -> None:
        self._started = time.time_ns()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "db.system.name": "valkey",
            "db.operation.name": self._operation,
            STORE_DURATION: (time.time_ns() - self._started) / 1e6,
        }
        if kind is not None:
            attributes["error.type"] = kind.__name__
        span.add_event(f"valkey {self._operation}", attributes, self._started)


class _SpanRequest(RequestScope):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def tasks(self, ids: Sequence[str]) -> None:
        if self._span.is_recording() and ids:
            if len(ids) == 1:
                self._span.set_attribute(TASK_ID, ids[0])
            else:
                self._span.set_attribute(TASK_IDS, list(ids))

    def status(self, code: int) -> None:
        if self._span.is_recording():
            self._span.set_attribute("http.response.status_code", code)
            if code >= 500:
                self._span.set_status(StatusCode.ERROR)


class _TracedProcess(ProcessScope):
    __slots__ = ("_batch", "_producers", "_tracer")

    def __init__(self, tracer: trace.Tracer, span: Span, producers: list[SpanContext | None]) -> None:
        self._tracer = tracer
        self._batch = span if len(producers) > 1 else None
        self._producers = producers

    def running(self, envelope: TaskEnvelope, position: int) -> AbstractContextManager[TaskScope]:
        return self._running(envelope, position)

    @contextmanager
    def _running(self, envelope: TaskEnvelope, position: int) -> Iterator[TaskScope]:
        from shared.telemetry import current_task_id

        parent = None
        links: list[Link] = []
        if self._batch is None:
            # A single delivery: name the task on the process span; the task span is its child.
            process = trace.get_current_span()
            if process.is_recording():
                process.set_attribute(TASK_ID, envelope.id)
                process.set_attribute("messaging.message.id", envelope.id)
        else:
            # In a batch, each task's span stays in its own task's trace, linked to the batch.
            parent = as_parent(self._producers[position])
            links = [Link(self._batch.get_span_context())]
        token = current_task_id.set(envelope.id)
        try:
            with self._tracer.start_as_current_span(
                f"task {envelope.type}",
                parent,
                SpanKind.INTERNAL,
                {TASK_ID: envelope.id, TASK_TYPE: envelope.type},
                links,
            ) as span:
                yield _SpanTask(span)
        finally:
            current_task_id.reset(token)


class _SpanTask(TaskScope):
    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def finished(self, outcome: Outcome) -> None:
        if not self._span.is_recording():
            return
        if outcome.cache_hit is not None:
            self._span.set_attribute("tasklane.cache.hit", outcome.cache_hit)
        if outcome.error is not None:
            self._span.set_status(StatusCode.ERROR, outcome.error)
            self._span.set_attribute("tasklane.task.final", outcome.final)
