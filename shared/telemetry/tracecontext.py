"""W3C trace context on messages: one extractor for ``traceparent`` and ``Diagnostic-Id``.

Producers write ``traceparent``/``tracestate`` (and ``Diagnostic-Id``, which the Azure SDKs and the
Functions host read for Service Bus); AMQP headers may arrive as bytes. Pure functions, no SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, set_span_in_context

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"

_HEX = frozenset("0123456789abcdef")


def parse_traceparent(value: str, tracestate: str = "") -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (version 00 layout), or None if malformed."""
    parts = value.strip().split("-")
    if len(parts) < 4:
        return None
    version, trace_id, span_id, flags = parts[0], parts[1], parts[2], parts[3]
    if (
        len(version) != 2
        or version == "ff"
        or (version == "00" and len(parts) != 4)
        or len(trace_id) != 32
        or len(span_id) != 16
        or len(flags) != 2
        or not _HEX.issuperset(version + trace_id + span_id + flags)
    ):
        return None
    trace, span = int(trace_id, 16), int(span_id, 16)
    if trace == 0 or span == 0:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else TraceState()
    return SpanContext(
        trace, span, is_remote=True, trace_flags=TraceFlags(int(flags, 16) & 1), trace_state=state
    )


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _text(headers: Mapping[Any, Any], name: str) -> str:
    value = headers.get(name)
    if isinstance(value, bytes | bytearray):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else ""


def extract(headers: Mapping[Any, Any] | None) -> SpanContext | None:
    """The producer's span context from message headers or application properties, if any.

    ``traceparent`` wins; ``Diagnostic-Id`` is read when it is W3C-shaped (the legacy
    hierarchical ``|a.b.`` form carries no W3C ids and is ignored).
    """
    if not headers:
        return None
    parent = _text(headers, TRACEPARENT) or _text(headers, DIAGNOSTIC_ID)
    return parse_traceparent(parent, _text(headers, TRACESTATE)) if parent else None


def as_parent(span_context: SpanContext | None) -> Context | None:
    """An OpenTelemetry context whose current span is ``span_context`` (None: start a new trace)."""
    if span_context is None:
        return None
    return set_span_in_context(NonRecordingSpan(span_context))
