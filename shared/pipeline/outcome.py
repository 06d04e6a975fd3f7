"""How an attempt started and how it ended: what the processor hands the store to record."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shared.pipeline.envelope import TaskEnvelope
from shared.pipeline.status import TaskStatus


def cache_key(task_type: str, payload: dict[str, Any]) -> str:
    """Same type and payload, same key: canonical JSON (sorted keys) hashed."""
    canonical = json.dumps([task_type, payload], sort_keys=True, separators=(",", ":"))
    return f"tl:cache:{hashlib.sha256(canonical.encode()).hexdigest()}"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What starting an attempt found: the earlier status, this attempt's number, a cached result."""

    previous_status: TaskStatus | None
    attempts: int
    cached: bytes | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended: ``result`` (JSON bytes) on success, ``error`` on failure.

    ``final`` marks a failure after which no attempt follows (out of attempts, unknown type, or a
    handler that raised :class:`~shared.pipeline.registry.PermanentError`).
    """

    envelope: TaskEnvelope
    started_at: float
    duration: float = 0.0
    result: bytes = b"null"
    error: str | None = None
    final: bool = False
    cache: str | None = None
    cache_ttl: int | None = None
    cache_hit: bool | None = None
    attempt: int = 1
    #: The handler's traceback (bounded), on failure.
    traceback: str | None = None
    #: When the next attempt may run (epoch s), when there is one.
    retry_at: float | None = None
    #: Why it is dead-lettered (``DeadLetterReason``), when it is.
    reason: str | None = None

    @property
    def status(self) -> TaskStatus:
        if self.error is None:
            return TaskStatus.SUCCEEDED
        return TaskStatus.DEAD_LETTERED if self.final else TaskStatus.FAILED
