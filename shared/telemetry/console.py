"""A compact console view of finished traces: one log line per local root span and its descendants.

For local use (``TASKLANE_TRACE_CONSOLE=1``): a span whose parent is absent or remote (the HTTP
span, a consumer's ``process`` span) closes a group, and the group prints as one line:
``trace 4bf92f35… POST /api/tasks 3.1ms | send tasks 1.2ms (task 8f…)``.
"""

from __future__ import annotations

import logging
import threading

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

log = logging.getLogger("tasklane.traces")

#: Groups kept at most; a root that never ends must not grow memory without bound.
MAX_OPEN_GROUPS = 10_000


def _ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def describe(span: ReadableSpan) -> str:
    task = (span.attributes or {}).get("tasklane.task.id")
    status = " ERROR" if not span.status.is_ok else ""
    suffix = f" (task {task})" if task else ""
    return f"{span.name} {_ms(span):.1f}ms{status}{suffix}"


def format_group(root: ReadableSpan, descendants: list[ReadableSpan]) -> str:
    """``trace <id> <root> | <descendant> | ...``, descendants in start order."""
    context = root.get_span_context()
    trace_id = f"{context.trace_id:032x}" if context else "?"
    parts = [describe(root)] + [describe(s) for s in sorted(descendants, key=lambda s: s.start_time or 0)]
    return f"trace {trace_id} " + " | ".join(parts)


class ConsoleTraceProcessor(SpanProcessor):
    """Groups spans under their local root and logs each group when its root ends."""

    def __init__(self) -> None:
        self._root_of: dict[int, int] = {}
        self._groups: dict[int, list[ReadableSpan]] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span_id = span.context.span_id
        parent = span.parent
        with self._lock:
            root = self._root_of.get(parent.span_id) if parent and not parent.is_remote else None
            if root is None and len(self._root_of) >= MAX_OPEN_GROUPS:
                return
            self._root_of[span_id] = span_id if root is None else root

    def on_end(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        if context is None:
            return
        with self._lock:
            root = self._root_of.pop(context.span_id, None)
            if root is None:
                return
            if root != context.span_id:
                self._groups.setdefault(root, []).append(span)
                return
            descendants = self._groups.pop(root, [])
        log.info("%s", format_group(span, descendants))

    def shutdown(self) -> None:
        with self._lock:
            self._root_of.clear()
            self._groups.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
