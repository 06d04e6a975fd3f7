"""Accept tasks and process them: the logic behind the HTTP and queue-triggered functions."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass

from shared.brokers import Broker, OutgoingMessage
from shared.envelope import TaskEnvelope
from shared.errors import FieldError, ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    id: str
    status: str = "queued"


def parse_submission(body: bytes) -> list[TaskEnvelope]:
    """Validate a submission (one task object) into envelopes; nothing is sent if any is bad."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ValidationError([FieldError(None, "body", f"not valid JSON: {exc}")]) from exc
    if not isinstance(document, dict):
        raise ValidationError([FieldError(None, "body", "expected a JSON object")])
    task_type = document.get("type")
    if not isinstance(task_type, str) or not task_type:
        raise ValidationError([FieldError(0, "type", "required: a non-empty string")])
    payload = document.get("payload", {})
    if not isinstance(payload, dict):
        raise ValidationError([FieldError(0, "payload", "expected an object")])
    return [TaskEnvelope(id=str(uuid.uuid4()), type=task_type, payload=payload, submitted_at=time.time())]


async def accept(broker: Broker, body: bytes) -> list[Accepted]:
    """Validate, send, and return the ids once the broker has confirmed every message."""
    envelopes = parse_submission(body)
    await broker.send_batch([OutgoingMessage(e.id, e.encode()) for e in envelopes])
    for envelope in envelopes:
        log.info("Task %s accepted (type %s)", envelope.id, envelope.type)
    return [Accepted(e.id) for e in envelopes]


async def process(body: bytes | str) -> TaskEnvelope:
    """Decode one queued task and run it."""
    envelope = TaskEnvelope.decode(body)
    log.info("Task %s processed (type %s)", envelope.id, envelope.type)
    return envelope
