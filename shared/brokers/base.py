"""The broker contract: ``send_batch``, ``dead_letter``, ``backlog``, ``close``.

Implementations: RabbitMQ (local profile), Service Bus (Azure) and an in-memory stub for tests.
One contract suite (``tests/test_broker_contract.py``) runs against each that can run here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send: ``id`` is the task id (Service Bus duplicate detection keys on it).

    ``scheduled_at`` (UTC, timezone-aware) is when the message is to arrive: Service Bus enqueues it
    then (a scheduled message); RabbitMQ holds it in a wait queue of the queue's topology.
    """

    id: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    scheduled_at: datetime | None = None
    #: The priority lane it goes to (:mod:`shared.brokers.lanes`); a one-queue broker ignores it.
    priority: str = "normal"


@dataclass(frozen=True)
class Backlog:
    """Queue depth as the broker reports it; ``scheduled`` is ``None`` where the broker cannot tell."""

    queue: str
    active: int
    dead_lettered: int
    scheduled: int | None = None
    taken_at: float = field(default_factory=time.time)
    #: Active messages per priority lane, when the broker has lanes.
    lanes: Mapping[str, int] | None = None

    @property
    def total(self) -> int:
        return self.active + (self.scheduled or 0)


class Broker(ABC):
    """Sends task messages to one queue and reports its backlog.

    ``send`` and ``send_batch`` return only once the broker has the messages (publisher confirms,
    or Service Bus's acknowledgement); anything less raises :class:`~shared.errors.BrokerError`.
    """

    #: ``messaging.system`` as OpenTelemetry names it: ``rabbitmq``, ``servicebus``.
    system: str
    queue: str

    @abstractmethod
    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        """Send every message, or raise; a partial failure raises too (callers may retry: ids dedupe)."""

    @abstractmethod
    async def dead_letter(self, messages: Sequence[OutgoingMessage]) -> None:
        """Put messages in the queue's dead-letter queue (confirmed, as :meth:`send_batch`).

        Their headers carry ``DeadLetterReason`` and ``DeadLetterErrorDescription``, the names
        Service Bus gives its own dead letters, so every dead letter reads alike.
        """

    @abstractmethod
    async def drain_dead_letters(self, decide: Callable[[OutgoingMessage], Awaitable[bool]]) -> None:
        """Offer each message in the dead-letter queue, as it is now, to ``decide`` once: a message for
        which it answers True leaves the queue; the others stay, as they were. If ``decide`` raises,
        the message it was deciding stays too, and the error propagates."""

    @abstractmethod
    async def backlog(self) -> Backlog:
        """Active, dead-lettered and (where known) scheduled messages of the queue."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the broker may be used again afterwards (it reconnects)."""
