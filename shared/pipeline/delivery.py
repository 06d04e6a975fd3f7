"""What a trigger hands the pipeline, one message at a time, and what the pipeline decides for it.

Adapters turn a trigger's input (a RabbitMQ body, a Service Bus batch) into :class:`Delivery` values;
the processor decides each on its own, so one bad message never holds back the others in a batch.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: What the Azure SDKs and the Functions host write for Service Bus, W3C-shaped where it counts.
DIAGNOSTIC_ID = "Diagnostic-Id"


@dataclass(frozen=True, slots=True)
class TraceContext:
    """The W3C trace context a message or request carried, as text; telemetry parses it once."""

    traceparent: str
    tracestate: str = ""

    @classmethod
    def of(cls, traceparent: str | None, tracestate: str | None = "") -> TraceContext | None:
        """None when there is no ``traceparent``."""
        return cls(traceparent, tracestate or "") if traceparent else None

    @classmethod
    def from_headers(cls, headers: Mapping[Any, Any] | None) -> TraceContext | None:
        """From AMQP headers or application properties: ``traceparent``, else ``Diagnostic-Id``.

        Values may arrive as bytes (the .NET clients write byte arrays).
        """
        if not headers:
            return None
        parent = _text(headers, TRACEPARENT) or _text(headers, DIAGNOSTIC_ID)
        return cls.of(parent, _text(headers, TRACESTATE))


def _text(headers: Mapping[Any, Any], name: str) -> str:
    value = headers.get(name)
    if isinstance(value, bytes | bytearray):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as delivered: its body, the broker's message id, and its trace context."""

    body: bytes
    message_id: str = ""
    delivery_count: int = 1
    trace: TraceContext | None = None


class Verdict(enum.Enum):
    """What became of a delivery."""

    #: Done with: the task succeeded, or the message repeats work already finished.
    COMPLETED = "completed"
    #: The attempt failed and a copy was sent for the next one, to arrive after its backoff.
    RETRIED = "retried"
    #: Not due yet, or Valkey was unreachable: sent again to arrive later; no attempt was made.
    DEFERRED = "deferred"
    #: Moved to the dead-letter queue with its reason (undecodable, or out of attempts).
    DEAD_LETTERED = "dead-lettered"
    #: Nothing could be decided (the store or the broker failed): the trigger must hand it back.
    REDELIVER = "redeliver"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one delivery, and why."""

    delivery: Delivery
    verdict: Verdict
    reason: str = ""

    @property
    def settled(self) -> bool:
        """True when the message may be acknowledged: the pipeline has dealt with it."""
        return self.verdict is not Verdict.REDELIVER


class RedeliveryError(Exception):
    """Raised by an adapter so that its trigger hands messages back to the broker for redelivery."""

    def __init__(self, decisions: list[Decision]) -> None:
        unsettled = [d for d in decisions if not d.settled]
        ids = ", ".join(d.delivery.message_id or "?" for d in unsettled)
        super().__init__(f"{len(unsettled)} message(s) not settled, handed back for redelivery: {ids}")
        self.decisions = unsettled
