"""One hierarchy for everything tasklane raises; SDK errors are translated where the SDK is called."""

from __future__ import annotations

from dataclasses import dataclass


class TasklaneError(Exception):
    """Base class of tasklane's errors."""


class ConfigError(TasklaneError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of one task of a submission."""

    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"field": self.field, "message": self.message}
        if self.index is not None:
            found = {"index": self.index, **found}
        return found


class ValidationError(TasklaneError):
    """A submission that must not be enqueued; ``errors`` names each bad index and field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"[{e.index}] {e.field}: {e.message}" for e in errors))
        self.errors = errors


class DecodeError(TasklaneError):
    """A message body that is not a task envelope; it goes to the dead-letter queue with this reason."""


class BrokerError(TasklaneError):
    """The broker did not take (or confirm) a message, or could not be reached."""


class StoreError(TasklaneError):
    """Valkey could not be reached or refused a command."""


class BackpressureError(TasklaneError):
    """The live backlog is at its limit; the client should retry after ``retry_after`` seconds."""

    def __init__(self, backlog: int, limit: int, retry_after: int) -> None:
        super().__init__(f"backlog {backlog} is over the limit {limit}; retry after {retry_after}s")
        self.backlog = backlog
        self.limit = limit
        self.retry_after = retry_after


class TaskFailedError(TasklaneError):
    """A handler raised or timed out; the message is redelivered until its attempts run out."""


class IdempotencyConflictError(TasklaneError):
    """A request with the same Idempotency-Key is still in flight; retry once it has finished."""


class IdempotencyMismatchError(TasklaneError):
    """The Idempotency-Key was used before with another request body."""


class TaskNotFoundError(TasklaneError):
    """No task has this id (or its status has expired)."""


class TaskStateError(TasklaneError):
    """The task is not in a state that allows what was asked; ``status`` is the one it is in."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class RateLimitedError(TasklaneError):
    """The caller is over its rate: retry after ``retry_after`` seconds. ``limit`` tasks per second,
    ``burst`` at once; ``reset`` seconds until the caller's allowance is whole again."""

    def __init__(self, retry_after: float, limit: float, burst: int, reset: float) -> None:
        super().__init__(f"over {limit:g} tasks per second (burst {burst}); retry after {retry_after:.2f}s")
        self.retry_after = retry_after
        self.limit = limit
        self.burst = burst
        self.reset = reset
