"""What the processor sends for a task after a delivery: the task again later (put off, or its next
attempt after its backoff) or its dead letter; each keeps to the task's priority lane.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from shared.brokers import OutgoingMessage
from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.outcome import Outcome

#: Application properties (Service Bus) or headers (RabbitMQ) a dead-lettered message carries; the
#: names Service Bus itself sets when it dead-letters, so both kinds read alike.
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"


def deferred_message(envelope: TaskEnvelope, now: float) -> OutgoingMessage:
    """The task's message again, to arrive when it is due (at ``now`` at the earliest); a message id
    of its own, since Service Bus drops a second message with an id it has seen as a duplicate."""
    due = max(now, envelope.not_before or now)
    return OutgoingMessage(
        f"{envelope.id}.later.{int(due * 1000)}",
        envelope.encode(),
        scheduled_at=datetime.fromtimestamp(due, UTC),
        priority=envelope.priority,
    )


def retry_message(outcome: Outcome) -> OutgoingMessage:
    # The next attempt is not run before its backoff: the envelope says when, and the broker holds it
    # until then (a Service Bus scheduled message, a RabbitMQ wait queue).
    envelope = msgspec.structs.replace(outcome.envelope, not_before=outcome.retry_at)
    return OutgoingMessage(
        f"{envelope.id}.{outcome.attempt + 1}",
        envelope.encode(),
        scheduled_at=datetime.fromtimestamp(outcome.retry_at, UTC) if outcome.retry_at else None,
        priority=envelope.priority,
    )


def dead_letter_message(outcome: Outcome) -> OutgoingMessage:
    envelope = outcome.envelope
    return OutgoingMessage(
        envelope.id,
        envelope.encode(),
        {
            DEAD_LETTER_REASON: outcome.reason or "TaskFailed",
            DEAD_LETTER_DESCRIPTION: (outcome.error or "")[:1000],
        },
        priority=envelope.priority,
    )
