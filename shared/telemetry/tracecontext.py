"""W3C trace context: the one ``traceparent`` parser, and the OpenTelemetry context it makes.

Adapters hand the text over in a :class:`~shared.pipeline.delivery.TraceContext` (read from
``traceparent`` or ``Diagnostic-Id``); it is parsed here once per message or request.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, set_span_in_context

from shared.pipeline.delivery import TraceContext

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


def parse(context: TraceContext | None) -> SpanContext | None:
    """The remote span context a message or request carried, or None."""
    if context is None:
        return None
    return parse_traceparent(context.traceparent, context.tracestate)


def as_parent(span_context: SpanContext | None) -> Context | None:
    """An OpenTelemetry context whose current span is ``span_context`` (None: start a new trace)."""
    if span_context is None:
        return None
    return set_span_in_context(NonRecordingSpan(span_context))
