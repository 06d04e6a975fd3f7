"""In-memory broker for tests: keeps what was sent, in order, and can be told to fail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from shared.brokers.base import Backlog, Broker, OutgoingMessage
from shared.errors import BrokerError


class StubBroker(Broker):
    """Holds messages in lists; ``fail_next`` makes the next send raise as a broker outage would."""

    system = "stub"

    def __init__(self, queue: str = "tasks") -> None:
        self.queue = queue
        self.messages: list[OutgoingMessage] = []
        self.dead_letters: list[OutgoingMessage] = []
        self.fail_next = False
        self.closed = False

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BrokerError(f"queue '{self.queue}': the stub was told to refuse this send")
        self.closed = False
        self.messages.extend(messages)

    async def dead_letter(self, messages: Sequence[OutgoingMessage]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BrokerError(f"queue '{self.queue}': the stub was told to refuse this dead letter")
        self.dead_letters.extend(messages)

    async def drain_dead_letters(self, decide: Callable[[OutgoingMessage], Awaitable[bool]]) -> None:
        for message in list(self.dead_letters):
            if await decide(message):
                self.dead_letters.remove(message)

    async def backlog(self) -> Backlog:
        return Backlog(
            self.queue, active=len(self.messages), dead_lettered=len(self.dead_letters), scheduled=0
        )

    async def close(self) -> None:
        self.closed = True

    def take(self) -> OutgoingMessage:
        """Remove and return the oldest message, as a consumer would."""
        return self.messages.pop(0)
