"""The one seam for cross-cutting concerns: hooks fired around accept, send, process, run and record.

The pipeline and the brokers call a :class:`Hooks` and never ask whether telemetry is on. This base
class does nothing (every context it opens is a shared no-op), so a task without telemetry pays a
few empty calls. ``shared.telemetry`` implements metrics and OpenTelemetry tracing on top of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.brokers.base import Backlog, OutgoingMessage
    from shared.pipeline.delivery import Delivery, TraceContext
    from shared.pipeline.envelope import TaskEnvelope
    from shared.pipeline.outcome import Outcome


class RequestScope:
    """What an HTTP route reports about the request it is serving."""

    def tasks(self, ids: Sequence[str]) -> None:
        """The tasks this request accepted or read."""

    def status(self, code: int) -> None:
        """The response's status code."""


class TaskScope:
    """What the processor reports about the attempt it is running."""

    def finished(self, outcome: Outcome) -> None:
        """The attempt ended with ``outcome``."""


class ProcessScope:
    """One trigger invocation's deliveries being processed."""

    def running(self, envelope: TaskEnvelope, position: int) -> AbstractContextManager[TaskScope]:
        """Around the attempt of the task at ``position`` in the deliveries."""
        return _NO_TASK


_NO_REQUEST: AbstractContextManager[RequestScope] = nullcontext(RequestScope())
_NO_TASK: AbstractContextManager[TaskScope] = nullcontext(TaskScope())
_NO_PROCESS: AbstractContextManager[ProcessScope] = nullcontext(ProcessScope())
_NO_CALL: AbstractContextManager[None] = nullcontext()


class Hooks:
    """Does nothing; subclasses override what they observe. Every method must be cheap."""

    def request(
        self, route: str, method: str, trace: TraceContext | None
    ) -> AbstractContextManager[RequestScope]:
        """Around an HTTP request to ``route``, continuing the caller's ``trace``."""
        return _NO_REQUEST

    def sending(
        self, system: str, queue: str, messages: Sequence[OutgoingMessage]
    ) -> AbstractContextManager[Sequence[OutgoingMessage]]:
        """Around a send; yields the messages to send (with trace headers added, where traced)."""
        return _sending(messages)

    def store_call(self, operation: str) -> AbstractContextManager[None]:
        """Around one Valkey round trip, ``operation``, made inside the current request or process."""
        return _NO_CALL

    def processing(
        self, system: str, queue: str, deliveries: Sequence[Delivery]
    ) -> AbstractContextManager[ProcessScope]:
        """Around one trigger invocation's ``deliveries``."""
        return _NO_PROCESS

    def accepted(self, envelopes: Sequence[TaskEnvelope]) -> None:
        """Tasks were accepted (recorded and sent)."""

    def trace_id(self) -> str:
        """The current trace's id (32 hex digits), kept with the tasks a request accepts; '' untraced."""
        return ""

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        """Attempts' outcomes were recorded."""

    def backlog(self, backlog: Backlog) -> None:
        """A backlog snapshot was taken (the timer); export it before the invocation returns."""


@contextmanager
def _sending(messages: Sequence[OutgoingMessage]) -> Iterator[Sequence[OutgoingMessage]]:
    yield messages
