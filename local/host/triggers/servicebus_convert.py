"""SDK messages → ``azure.functions.ServiceBusMessage``, along the path a message takes in Azure.

There, the extension turns a ``ServiceBusReceivedMessage`` into binding data
(``ServiceBusTriggerBindingStrategy.AddBindingData``), the host encodes each value as RPC
``TypedData`` (strings as ``string``; numbers, dates and dictionaries as ``json``; ``string[]`` and
``long[]`` as collections, empty strings left out) and the worker hands the result to the library's
``ServiceBusMessageInConverter``. We build the same binding data from the Python SDK's message,
encode it with the host's rules and call that converter, so a function sees the values Azure gives
it, quirks included: ``delivery_count`` counts this delivery (the SDK's AMQP header does not),
``enqueued_time_utc`` is naive, and fields the extension does not send (``locked_until``,
``time_to_live``, ``state``, ``enqueued_sequence_number``, ``scheduled_enqueue_time_utc``,
``dead_letter_reason``...) are ``None``.
"""

from __future__ import annotations

import base64
import datetime
import enum
import json
import re
import types
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from local.host.errors import IndexingError
from local.host.indexing import IndexedFunction

_VIA_PARTITION_KEY = b"x-opt-via-partition-key"
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
#: What DateTimeOffset.MaxValue serialises to: the extension's ExpiresAt for a message without TTL.
_NEVER_EXPIRES = datetime.datetime.max.replace(tzinfo=datetime.UTC)


class InputShape(enum.Enum):
    """What the trigger parameter receives, decided from its annotation as the worker decides."""

    MESSAGE = "message"  # ServiceBusMessage, or a list of them for cardinality many
    BYTES = "bytes"
    STR = "str"


def input_shape(fn: IndexedFunction, many: bool) -> InputShape:
    """The shape of ``fn``'s trigger argument; an annotation the worker would reject is an error."""
    annotation = fn.annotation(fn.trigger.name)
    if annotation in (bytes, str) and not many:
        return InputShape.BYTES if annotation is bytes else InputShape.STR
    if annotation is Any or annotation is fn.parameters[fn.trigger.name].empty:
        return InputShape.MESSAGE
    if ServiceBusMessageInConverter.check_input_type_annotation(annotation):
        return InputShape.MESSAGE
    if isinstance(annotation, types.GenericAlias):
        # The worker only knows typing's generics (azure-functions-python-worker#1034).
        raise IndexingError(
            fn.name,
            f"binding {fn.trigger.name} has invalid non-type annotation {annotation}: the Python worker "
            "does not accept built-in generics here; write typing.List[func.ServiceBusMessage]",
        )
    expected = "typing.List[func.ServiceBusMessage]" if many else "func.ServiceBusMessage, str or bytes"
    raise IndexingError(
        fn.name,
        f'type of {fn.trigger.name} binding "serviceBusTrigger" does not match its Python annotation '
        f"{getattr(annotation, '__name__', annotation)!r} (expected {expected})",
    )


def to_argument(
    shape: InputShape, messages: Sequence[ServiceBusReceivedMessage], *, many: bool, function_name: str
) -> Any:
    """The value passed to the function for ``messages`` (one, or the batch when ``many``)."""
    if shape is InputShape.BYTES:
        return message_body(messages[0])
    if shape is InputShape.STR:
        return message_body(messages[0]).decode("utf-8")
    sys = _sys_binding_data(function_name)
    if many:
        metadata = batch_binding_data(messages) | {"sys": sys}
        data = meta.Datum(
            types.SimpleNamespace(bytes=[message_body(m) for m in messages]), "collection_bytes"
        )
    else:
        metadata = single_binding_data(messages[0]) | {"sys": sys}
        data = meta.Datum(message_body(messages[0]), "bytes")
    return ServiceBusMessageInConverter.decode(data, trigger_metadata=metadata)


def single_binding_data(message: ServiceBusReceivedMessage) -> dict[str, meta.Datum]:
    """The trigger metadata the host sends for one message, encoded as RPC data."""
    values = _binding_values(message)
    return {name: datum for name, value in values.items() if (datum := _to_rpc(value)) is not None}


def batch_binding_data(messages: Sequence[ServiceBusReceivedMessage]) -> dict[str, meta.Datum]:
    """The ``...Array`` trigger metadata the host sends for a batch."""
    rows = [_binding_values(m) for m in messages]
    arrays: dict[str, meta.Datum] = {}
    for name, kind in _ARRAY_KINDS.items():
        column = [row.get(name) for row in rows]
        arrays[f"{name}Array"] = _encode_array(column, kind)
    # The extension fills TransactionPartitionKeyArray from the partition keys; kept as it is.
    arrays["TransactionPartitionKeyArray"] = arrays["PartitionKeyArray"]
    return arrays


def message_body(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes; a value or sequence body (rare, non-.NET senders) as its JSON or text."""
    body_type = message.body_type
    if body_type == AmqpMessageBodyType.DATA:
        return b"".join(message.body)
    if body_type == AmqpMessageBodyType.SEQUENCE:
        return json.dumps(_plain(list(message.body)), default=str).encode("utf-8")
    value = message.body
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(_plain(value), default=str).encode("utf-8")


def trace_context(messages: Sequence[ServiceBusReceivedMessage]) -> tuple[str, str]:
    """``(traceparent, tracestate)`` of the first message that carries a W3C trace context.

    Producers write ``traceparent``/``tracestate``; the Azure SDKs write ``Diagnostic-Id`` in the
    same format, so either is read.
    """
    for message in messages:
        properties = application_properties(message)
        parent = str(properties.get("traceparent") or properties.get("Diagnostic-Id") or "")
        if _TRACEPARENT.match(parent):
            return parent, str(properties.get("tracestate") or "")
    return "", ""


def application_properties(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """Application properties with text keys and values (AMQP strings arrive as bytes)."""
    raw = message.application_properties or {}
    return {_text(key): _plain(value) for key, value in raw.items()}


def _binding_values(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    # Names and order of the extension's single-dispatch binding data.
    enqueued = message.enqueued_time_utc
    expires = _expires_at(message)
    properties = application_properties(message)
    annotations = message.raw_amqp_message.annotations or {}
    lock_token = message.lock_token
    return {
        # .NET counts the delivery being made; the AMQP header counts the earlier ones.
        "DeliveryCount": (message.delivery_count or 0) + 1,
        "DeadLetterSource": message.dead_letter_source,
        "LockToken": str(lock_token) if lock_token is not None else None,
        "ExpiresAtUtc": _DotNetDate(expires, offset=False),
        "ExpiresAt": _DotNetDate(expires, offset=True),
        "EnqueuedTimeUtc": _DotNetDate(enqueued, offset=False) if enqueued else None,
        "EnqueuedTime": _DotNetDate(enqueued, offset=True) if enqueued else None,
        "MessageId": _text(message.message_id) if message.message_id is not None else None,
        "ContentType": message.content_type,
        "ReplyTo": message.reply_to,
        "SequenceNumber": message.sequence_number,
        "To": message.to,
        "Subject": message.subject,
        "Label": message.subject,
        "CorrelationId": _text(message.correlation_id) if message.correlation_id is not None else None,
        "ApplicationProperties": properties,
        "UserProperties": properties,
        "SessionId": message.session_id,
        "ReplyToSessionId": message.reply_to_session_id,
        "PartitionKey": message.partition_key,
        "TransactionPartitionKey": _text_or_none(annotations.get(_VIA_PARTITION_KEY)),
    }


def _expires_at(message: ServiceBusReceivedMessage) -> datetime.datetime:
    # The SDK adds the TTL to the enqueued time; .NET caps the sum at DateTimeOffset.MaxValue.
    try:
        return message.expires_at_utc or _NEVER_EXPIRES
    except OverflowError:
        return _NEVER_EXPIRES


class _DotNetDate:
    """A DateTime (``offset=False``, kind unspecified) or DateTimeOffset as Json.NET writes it."""

    def __init__(self, value: datetime.datetime, *, offset: bool) -> None:
        self.value = value.astimezone(datetime.UTC) if value.tzinfo else value
        self.offset = offset

    def __str__(self) -> str:
        # "yyyy-MM-ddTHH:mm:ss.FFFFFFF": up to 7 fraction digits, trailing zeros dropped.
        text = self.value.strftime("%Y-%m-%dT%H:%M:%S")
        fraction = f"{self.value.microsecond:06d}".rstrip("0")
        if self.value == _NEVER_EXPIRES:
            fraction = "9999999"
        return text + (f".{fraction}" if fraction else "") + ("+00:00" if self.offset else "")


def _to_rpc(value: Any) -> meta.Datum | None:
    """One binding-data value as the host's ``ToRpc`` encodes it; ``None`` is not sent at all."""
    if value is None:
        return None
    if isinstance(value, str):
        return meta.Datum(value, "string")
    return meta.Datum(json.dumps(_json_ready(value)), "json")


# Per array: how the host encodes a .NET array of that element type.
_ARRAY_KINDS: dict[str, str] = {
    "DeliveryCount": "json",  # int[]
    "DeadLetterSource": "string",
    "LockToken": "string",
    "ExpiresAtUtc": "json",  # DateTime[]
    "ExpiresAt": "json",
    "EnqueuedTimeUtc": "json",
    "EnqueuedTime": "json",
    "MessageId": "string",
    "ContentType": "string",
    "ReplyTo": "string",
    "SequenceNumber": "sint64",  # long[]
    "To": "string",
    "Subject": "string",
    "Label": "string",
    "CorrelationId": "string",
    "ApplicationProperties": "json",
    "UserProperties": "json",
    "SessionId": "string",
    "ReplyToSessionId": "string",
    "PartitionKey": "string",
}


def _encode_array(column: list[Any], kind: str) -> meta.Datum:
    if kind == "string":
        # The Python worker does not ask for empty entries, so null and "" are dropped (and the
        # remaining entries shift), as in Azure.
        return meta.Datum(types.SimpleNamespace(string=[v for v in column if v]), "collection_string")
    if kind == "sint64":
        return meta.Datum(types.SimpleNamespace(sint64=[int(v or 0) for v in column]), "collection_sint64")
    return meta.Datum(json.dumps([_json_ready(v) for v in column]), "json")


def _json_ready(value: Any) -> Any:
    if isinstance(value, _DotNetDate):
        return str(value)
    return _plain(value)


def _plain(value: Any) -> Any:
    """A JSON-ready copy of an AMQP value: bytes as text (base64 if not UTF-8, like .NET byte[])."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {_text(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, uuid.UUID | datetime.datetime | datetime.date):
        return str(value)
    return value


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _sys_binding_data(function_name: str) -> meta.Datum:
    # The WebJobs SDK adds "sys" to every trigger's binding data.
    now = _DotNetDate(datetime.datetime.now(datetime.UTC), offset=False)
    sys = {"MethodName": function_name, "UtcNow": f"{now}Z", "RandGuid": str(uuid.uuid4())}
    return meta.Datum(json.dumps(sys), "json")
