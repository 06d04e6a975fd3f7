"""Telemetry end to end: our host exports OTLP/HTTP to a real receiver, and each task is one trace.

The receiver decodes the protobuf export requests (opentelemetry-proto), as SigNoz's collector does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest

from shared.platform.rabbitmq_topology import QueueTopology, delete_queue_topology
from shared.tasks import registry
from tests.conftest import RABBITMQ_URL
from tests.hosting import RunningHost, start_host
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("rabbitmq_url", "valkey_url")

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5  # opentelemetry.proto Span.SpanKind
WARN = 13  # opentelemetry.proto SeverityNumber SEVERITY_NUMBER_WARN
ROLES = {"http", "send", "process", "task"}
#: host.json's extensions.rabbitMQ.prefetchCount: deliveries the trigger holds unacknowledged.
PREFETCH = 30
#: The ``fail`` task type's attempts: the last one is dead-lettered.
FAIL_ATTEMPTS = registry.get("fail").max_attempts  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def host(receiver: OTLPReceiver) -> Iterator[RunningHost]:
    running = start_host(
        settings={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_SERVICE_NAME": "tasklane-test",
        }
    )
    yield running
    running.stop()
    asyncio.run(delete_queue_topology(RABBITMQ_URL, running.queue))


def _submit(host: RunningHost, document: Any, **headers: str) -> Any:
    with host.client() as http:
        response = http.post("/api/tasks", json=document, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def _task_spans(receiver: OTLPReceiver, task_id: str) -> dict[str, ReceivedSpan]:
    """The task's HTTP, send, process and handler spans by role."""
    found: dict[str, ReceivedSpan] = {}
    for span in receiver.received.snapshot_spans():
        ids = [span.attributes.get("tasklane.task.id"), *span.attributes.get("tasklane.task.ids", [])]
        if task_id not in ids:
            continue
        role = {SERVER: "http", PRODUCER: "send", CONSUMER: "process", INTERNAL: "task"}.get(
            span.kind, span.name
        )
        found[role] = span
    return found


def _whole_trace(receiver: OTLPReceiver, task_id: str) -> dict[str, ReceivedSpan]:
    spans: dict[str, ReceivedSpan] = {}

    def arrived() -> bool:
        spans.update(_task_spans(receiver, task_id))
        return set(spans) == ROLES

    eventually(arrived, within=15)
    return spans


def _assert_one_trace(spans: dict[str, ReceivedSpan], queue: str, task_id: str) -> None:
    http, send, process, task = spans["http"], spans["send"], spans["process"], spans["task"]
    assert {s.trace_id for s in spans.values()} == {http.trace_id}
    assert send.parent_span_id == http.span_id
    assert process.parent_span_id == send.span_id
    assert task.parent_span_id == process.span_id
    # Each Valkey round trip is an event on the span it was made in, not a span of its own
    assert [name for name, _ in http.events] == ["valkey record_accepted"]
    assert [name for name, _ in process.events] == ["valkey begin", "valkey record"]
    for _, attributes in [*http.events, *process.events]:
        assert attributes["db.system.name"] == "valkey"
        assert attributes["tasklane.valkey.duration_ms"] > 0
        assert "error.type" not in attributes
    assert len(spans) == len(ROLES)  # no other span names the task
    assert send.attributes["messaging.system"] == "rabbitmq"
    assert send.attributes["messaging.operation"] == "send"
    assert send.attributes["messaging.destination.name"] == queue
    assert send.attributes["messaging.message.id"] == task_id
    assert process.attributes["messaging.operation"] == "process"
    assert process.attributes["messaging.destination.name"] == queue
    assert http.attributes["http.route"] == "/api/tasks"


def test_one_trace_from_post_to_done(host: RunningHost, receiver: OTLPReceiver) -> None:
    # Given a host exporting to the receiver, When a task is submitted
    task_id = _submit(host, {"type": "add", "payload": {"x": 1, "y": 2}})["id"]
    # Then HTTP → send → process → handler is one trace, with the messaging attributes
    spans = _whole_trace(receiver, task_id)
    _assert_one_trace(spans, host.queue, task_id)
    # And the task's status names its trace, to open it in SigNoz
    with host.client() as http:
        assert http.get(f"/api/tasks/{task_id}").json()["trace_id"] == spans["http"].trace_id
    resource = spans["http"].resource
    assert resource["service.name"] == "tasklane-test"
    assert {"service.version", "deployment.environment", "faas.name", "faas.instance"} <= set(resource)


def test_the_trace_continues_the_callers_traceparent(host: RunningHost, receiver: OTLPReceiver) -> None:
    # Given a caller that sends its own trace context
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    # When it submits a task
    task_id = _submit(
        host, {"type": "echo", "payload": {}}, traceparent=f"00-{caller_trace}-{caller_span}-01"
    )["id"]
    # Then the HTTP span is the caller's child and the whole task stays in the caller's trace
    spans = _whole_trace(receiver, task_id)
    assert spans["http"].trace_id == caller_trace
    assert spans["http"].parent_span_id == caller_span
    _assert_one_trace(spans, host.queue, task_id)


def test_a_batch_is_one_trace_with_a_send_and_a_process_per_task(
    host: RunningHost, receiver: OTLPReceiver
) -> None:
    # When three tasks are submitted in one array
    ids = [item["id"] for item in _submit(host, [{"type": "echo", "payload": {"n": n}} for n in range(3)])]
    # Then each task's send and process spans hang under the one HTTP span of the request
    traces = [_whole_trace(receiver, task_id) for task_id in ids]
    assert len({spans["http"].span_id for spans in traces}) == 1
    for task_id, spans in zip(ids, traces, strict=True):
        _assert_one_trace(spans, host.queue, task_id)
    assert traces[0]["http"].attributes["tasklane.task.ids"] == ids


def test_metrics_count_accepted_and_processed_tasks(host: RunningHost, receiver: OTLPReceiver) -> None:
    # When a task is submitted and processed
    task_id = _submit(host, {"type": "add", "payload": {"x": 2, "y": 3}})["id"]
    _whole_trace(receiver, task_id)

    # Then the counters and histograms arrive with their attributes
    def exported() -> bool:
        processed = receiver.received.snapshot_points("tasklane.tasks.processed")
        durations = receiver.received.snapshot_points("tasklane.task.duration")
        waits = receiver.received.snapshot_points("tasklane.task.queue_wait")
        accepted = receiver.received.snapshot_points("tasklane.tasks.accepted")
        return (
            any(p.attributes == {"type": "add", "outcome": "succeeded"} and p.value >= 1 for p in processed)
            and any(p.attributes.get("type") == "add" and p.value >= 1 for p in durations)
            and any(p.value >= 1 for p in waits)
            and any(p.attributes == {"type": "add"} and p.value >= 1 for p in accepted)
        )

    eventually(exported, within=10)
    # And no point carries exemplars, which SigNoz does not store (OTEL_METRICS_EXEMPLAR_FILTER unset)
    recorded_in_spans = receiver.received.snapshot_points("tasklane.task.duration")
    assert recorded_in_spans
    assert all(p.exemplars == 0 for p in recorded_in_spans)


def test_a_failing_task_logs_with_its_trace_and_task_id(host: RunningHost, receiver: OTLPReceiver) -> None:
    # When a task fails on every attempt (each failed attempt is re-sent, the last dead-lettered)
    task_id = _submit(host, {"type": "fail", "payload": {}})["id"]
    spans = _whole_trace(receiver, task_id)

    def handler_spans() -> list[ReceivedSpan]:
        return [
            s
            for s in receiver.received.snapshot_spans()
            if s.name == "task fail" and s.attributes.get("tasklane.task.id") == task_id
        ]

    eventually(lambda: len(handler_spans()) == FAIL_ATTEMPTS, within=15)
    # Then every attempt stays in the task's one trace, the re-sent ones included
    assert {s.trace_id for s in handler_spans()} == {spans["http"].trace_id}

    # And its warnings arrive as OTLP log records inside that trace, each in its attempt's span
    def logged() -> list[Any]:
        return [
            r
            for r in receiver.received.snapshot_logs()
            if r.attributes.get("task_id") == task_id and "failed" in r.body
        ]

    eventually(lambda: len(logged()) == FAIL_ATTEMPTS, within=10)
    for record in logged():
        assert record.trace_id == spans["http"].trace_id
        assert record.span_id in {s.span_id for s in handler_spans()}
    # And nothing below WARNING is exported (TASKLANE_OTLP_LOG_LEVEL's default): successes are in the trace
    severities = {r.severity for r in receiver.received.snapshot_logs()}
    assert severities
    assert min(severities) >= WARN
    # And the failed attempts and the final dead-lettering are counted by outcome
    for outcome in ("failed", "dead_lettered"):
        eventually(
            lambda outcome=outcome: any(
                p.attributes == {"type": "fail", "outcome": outcome}
                for p in receiver.received.snapshot_points("tasklane.tasks.processed")
            ),
            within=10,
        )


def test_backlog_gauge_carries_the_queue_depth(host: RunningHost, receiver: OTLPReceiver) -> None:
    # Given more sleeping tasks than the trigger holds at once: the rest wait in the queue
    waiting = 7
    _submit(host, [{"type": "sleep", "payload": {"seconds": 4}} for _ in range(PREFETCH + waiting)])
    # Then the timer's backlog gauge reports exactly those waiting in the normal lane, and no dead letters
    eventually(
        lambda: any(
            p.attributes == {"queue": host.queue, "state": "active", "priority": "normal"}
            and p.value == waiting
            for p in receiver.received.snapshot_points("tasklane.queue.backlog")
        ),
        within=10,
    )
    # And the dead-lettered gauge matches the dead-letter queue as the broker counts it
    dead_letters = asyncio.run(_depth(QueueTopology.for_queue(host.queue).dead_letter_queue))
    eventually(
        lambda: (
            [
                p.value
                for p in receiver.received.snapshot_points("tasklane.queue.backlog")
                if p.attributes == {"queue": host.queue, "state": "dead_lettered"}
            ][-1:]
            == [dead_letters]
        ),
        within=10,
    )


async def _depth(queue: str) -> int:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
