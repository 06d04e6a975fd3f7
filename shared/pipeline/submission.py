"""Parse a submission: one task or an array of up to 1,000, every bad index and field named."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from shared.brokers.lanes import NORMAL, PRIORITIES
from shared.errors import FieldError, ValidationError
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.registry import MAX_DELAY_SECONDS, PayloadError, Registry

MAX_TASKS_PER_SUBMISSION = 1000
#: How deep a body may nest arrays and objects (the task and its payload included).
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"nested deeper than {MAX_JSON_DEPTH} levels"
_JSON = msgspec.json.Decoder()


@dataclass(frozen=True)
class Submission:
    """Validated tasks, and whether the body was an array (the answer mirrors its shape)."""

    envelopes: list[TaskEnvelope]
    is_batch: bool


def parse_submission(body: bytes, registry: Registry, *, now: float | None = None) -> Submission:
    """Validate a body of one task or an array of up to 1,000; every bad index and field is named."""
    document = _decode(body)
    is_batch = isinstance(document, list)
    items = document if is_batch else [document]
    if is_batch and not items:
        raise ValidationError([FieldError(None, "body", "an array of tasks must not be empty")])
    if len(items) > MAX_TASKS_PER_SUBMISSION:
        raise ValidationError(
            [FieldError(None, "body", f"at most {MAX_TASKS_PER_SUBMISSION} tasks a request")]
        )
    submitted_at = time.time() if now is None else now
    envelopes: list[TaskEnvelope] = []
    errors: list[FieldError] = []
    for position, item in enumerate(items):
        index = position if is_batch else None
        try:
            task_type, payload = _validate_item(item, registry)
            not_before = _moment(item, "delay", "not_before", submitted_at)
            expires_at = _moment(item, "expires_in", "expires_at", submitted_at, past_is_now=False)
            if expires_at is not None and not_before is not None and expires_at <= not_before:
                raise _ItemError("expires_at", "must come after the task is due")
            priority = _priority(item)
        except _ItemError as exc:
            errors.append(FieldError(index, exc.field, exc.message))
            continue
        envelopes.append(
            TaskEnvelope(
                str(uuid.uuid4()), task_type, payload, submitted_at, not_before, expires_at, priority
            )
        )
    if errors:
        raise ValidationError(errors)
    return Submission(envelopes, is_batch)


def _decode(body: bytes) -> Any:
    """The JSON document of ``body``; a 400 for invalid JSON or nesting past :data:`MAX_JSON_DEPTH`."""
    try:
        document = _JSON.decode(body)
    except msgspec.DecodeError as exc:
        raise ValidationError([FieldError(None, "body", f"not valid JSON: {exc}")]) from exc
    except RecursionError as exc:  # far past the limit: the decoder ran out of stack first
        raise ValidationError([FieldError(None, "body", _TOO_DEEP)]) from exc
    # Counting brackets runs in C; only a body with enough of them to nest too deep is walked.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _nests_deeper(document, MAX_JSON_DEPTH):
        raise ValidationError([FieldError(None, "body", _TOO_DEEP)])
    return document


def _nests_deeper(document: object, limit: int) -> bool:
    """Whether arrays and objects in ``document`` nest more than ``limit`` levels (no recursion)."""
    if not isinstance(document, dict | list):
        return False
    pending: list[tuple[dict[str, Any] | list[Any], int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth == limit:
                    return True
                pending.append((child, depth + 1))
    return False


class _ItemError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message


def _validate_item(item: object, registry: Registry) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise _ItemError("task", "expected an object with 'type' and 'payload'")
    unknown = set(item) - _FIELDS
    if unknown:
        raise _ItemError(
            sorted(unknown)[0],
            "unknown field (a task has 'type', 'payload', 'priority', 'delay' or 'not_before',"
            " 'expires_in' or 'expires_at')",
        )
    name = item.get("type")
    if not isinstance(name, str) or not name:
        raise _ItemError("type", "required: the name of a task type")
    task_type = registry.get(name)
    if task_type is None:
        known = ", ".join(t.name for t in registry)
        raise _ItemError("type", f"unknown task type '{name}' (known: {known})")
    try:
        validated = task_type.validate(item.get("payload", {}))
    except PayloadError as exc:
        raise _ItemError(exc.field, exc.message) from exc
    return name, msgspec.to_builtins(validated)


_FIELDS = frozenset({"type", "payload", "priority", "delay", "not_before", "expires_in", "expires_at"})


def _priority(item: dict[str, Any]) -> str:
    priority = item.get("priority", NORMAL)
    if priority not in PRIORITIES:
        raise _ItemError("priority", f"one of {', '.join(repr(p) for p in PRIORITIES)} (default 'normal')")
    return str(priority)


def _moment(
    item: dict[str, Any], seconds_field: str, time_field: str, now: float, *, past_is_now: bool = True
) -> float | None:
    """A moment a task gives either as seconds from now (``delay``, ``expires_in``) or as an RFC 3339
    time (``not_before``, ``expires_at``), at most :data:`MAX_DELAY_SECONDS` ahead; None when neither
    is given. A zero delay or a past time means now, unless ``past_is_now`` is False (an expiry), when
    it is an error."""
    delay, at = item.get(seconds_field), item.get(time_field)
    if delay is not None and at is not None:
        raise _ItemError(seconds_field, f"give either '{seconds_field}' or '{time_field}', not both")
    if delay is not None:
        number = isinstance(delay, int | float) and not isinstance(delay, bool)
        low = 0 if past_is_now else 1
        if not number or not low <= delay <= MAX_DELAY_SECONDS:
            raise _ItemError(seconds_field, f"seconds from {low} to {MAX_DELAY_SECONDS} (7 days)")
        return now + delay if delay > 0 else None
    if at is None:
        return None
    if not isinstance(at, str):
        raise _ItemError(time_field, "an RFC 3339 date-time with its offset, e.g. 2026-12-24T18:00:00Z")
    try:
        when = datetime.fromisoformat(at.replace("z", "Z"))
    except ValueError:
        raise _ItemError(time_field, f"'{at}' is not an RFC 3339 date-time") from None
    if when.tzinfo is None:
        raise _ItemError(time_field, "needs its offset (Z or +hh:mm), or the time is ambiguous")
    moment = when.timestamp()
    if moment - now > MAX_DELAY_SECONDS:
        raise _ItemError(time_field, f"at most {MAX_DELAY_SECONDS} seconds (7 days) ahead")
    if moment <= now and not past_is_now:
        raise _ItemError(time_field, f"'{at}' has passed already")
    return moment if moment > now else None
