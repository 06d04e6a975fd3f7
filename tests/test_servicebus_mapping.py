"""``azure.functions.ServiceBusMessage`` from SDK messages, field by field, as the worker fills it."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from local.host.triggers.servicebus_convert import InputShape, message_body, to_argument, trace_context
from tests.servicebus_fake import received_message

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TOKEN = uuid.UUID("6f1b8e0c-3f7c-4d2a-9a51-0c2f0f3f9b11")
ENQUEUED = datetime.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.UTC)


def full_message() -> Any:
    """One message with every property a sender or the broker can set."""
    sent = ServiceBusMessage(
        b'{"type":"echo"}',
        message_id="task-42",
        content_type="application/json",
        correlation_id="corr-1",
        subject="echo",
        to="processor",
        reply_to="replies",
        reply_to_session_id="reply-session",
        session_id="session-1",
        partition_key="session-1",
        time_to_live=datetime.timedelta(minutes=5),
        application_properties={"traceparent": TRACEPARENT, "attempt": 2, "urgent": True},
    )
    return received_message(
        sent,
        sequence_number=42,
        prior_deliveries=2,
        enqueued_ms=int(ENQUEUED.timestamp() * 1000),
        lock_token=TOKEN,
        wire_properties={"blob": b"\xff\x00"},
        annotations={
            b"x-opt-deadletter-source": "tasks",
            b"x-opt-via-partition-key": "via-key",
            b"x-opt-enqueue-sequence-number": 7,
            b"x-opt-message-state": 1,
        },
    )


ENQUEUED_NAIVE = datetime.datetime(2025, 3, 4, 5, 6, 7, 890000)
PROPERTIES = {"traceparent": TRACEPARENT, "attempt": 2, "urgent": True, "blob": "/wA="}
FIELDS: list[tuple[str, Any]] = [
    ("message_id", "task-42"),
    ("delivery_count", 3),  # two earlier deliveries, and this one (as .NET counts)
    ("sequence_number", 42),
    ("lock_token", str(TOKEN)),
    ("enqueued_time_utc", ENQUEUED_NAIVE),  # DateTime of kind Unspecified in the extension: naive
    ("expires_at_utc", ENQUEUED_NAIVE + datetime.timedelta(minutes=5)),
    ("expiration_time", ENQUEUED_NAIVE + datetime.timedelta(minutes=5)),
    ("content_type", "application/json"),
    ("correlation_id", "corr-1"),
    ("subject", "echo"),
    ("label", "echo"),
    ("to", "processor"),
    ("reply_to", "replies"),
    ("session_id", "session-1"),
    ("reply_to_session_id", "reply-session"),
    ("partition_key", "session-1"),
    ("transaction_partition_key", "via-key"),
    ("dead_letter_source", "tasks"),
    ("application_properties", PROPERTIES),  # AMQP binary that is not text: base64, as Json.NET writes byte[]
    ("user_properties", PROPERTIES),
    # The extension does not put these in the binding data, so the worker sets None in Azure.
    ("locked_until", None),
    ("time_to_live", None),
    ("scheduled_enqueue_time_utc", None),
    ("enqueued_sequence_number", None),
    ("state", None),
    ("dead_letter_reason", None),
    ("dead_letter_error_description", None),
]
#: The extension fills TransactionPartitionKeyArray from the partition keys.
BATCH_DIFFERENCES = {"transaction_partition_key": "session-1"}


@pytest.mark.parametrize("many", [False, True], ids=["one", "many"])
@pytest.mark.parametrize(("field", "expected"), FIELDS, ids=[f for f, _ in FIELDS])
def test_message_fields_are_what_the_worker_gives_in_azure(many: bool, field: str, expected: Any) -> None:
    # Given a received message, When it becomes the function's argument
    argument = to_argument(InputShape.MESSAGE, [full_message()], many=many, function_name="process_tasks")
    message = argument[0] if many else argument

    # Then each field has the value (and type) the Python worker produces from the host's data
    if many:
        expected = BATCH_DIFFERENCES.get(field, expected)
    assert getattr(message, field) == expected
    assert type(getattr(message, field)) is type(expected)
    assert message.get_body() == b'{"type":"echo"}'


@pytest.mark.parametrize(("many", "key"), [(False, "MessageId"), (True, "MessageIdArray")])
def test_trigger_metadata_holds_the_binding_data_and_sys(many: bool, key: str) -> None:
    argument = to_argument(InputShape.MESSAGE, [full_message()], many=many, function_name="process_tasks")
    metadata = (argument[0] if many else argument).metadata

    assert metadata[key] in ("task-42", ["task-42"])
    assert metadata["sys"]["MethodName"] == "process_tasks"


def test_a_batch_drops_empty_strings_from_its_arrays_as_azure_does() -> None:
    # Given a batch where only the second message has a content type
    first = received_message(ServiceBusMessage(b"1", message_id="a"))
    second = received_message(ServiceBusMessage(b"2", message_id="b", content_type="text/plain"))

    # When the batch is bound
    messages = to_argument(InputShape.MESSAGE, [first, second], many=True, function_name="f")

    # Then, as the host leaves nulls out of string arrays for the Python worker, the value shifts
    assert [m.content_type for m in messages] == ["text/plain", None]
    assert [m.message_id for m in messages] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ServiceBusMessage(b"raw\x00bytes"), b"raw\x00bytes"),
        (AmqpAnnotatedMessage(value_body={"a": 1}), b'{"a": 1}'),
        (AmqpAnnotatedMessage(value_body="text"), b"text"),
        (AmqpAnnotatedMessage(sequence_body=[1, 2]), b"[[1, 2]]"),
    ],
)
def test_message_body_as_bytes(body: Any, expected: bytes) -> None:
    assert message_body(received_message(body)) == expected


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({"traceparent": TRACEPARENT, "tracestate": "a=1"}, (TRACEPARENT, "a=1")),
        ({"Diagnostic-Id": TRACEPARENT}, (TRACEPARENT, "")),
        ({"Diagnostic-Id": "|abc.1."}, ("", "")),  # the legacy hierarchical id is not W3C
        ({}, ("", "")),
    ],
)
def test_trace_context_from_application_properties(properties: dict[str, str], expected: Any) -> None:
    message = received_message(ServiceBusMessage(b"x", application_properties=properties or None))
    assert trace_context([message]) == expected
