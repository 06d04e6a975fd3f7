"""A task's statuses, as Valkey stores them and the API shows them."""

from __future__ import annotations

import enum


class TaskStatus(enum.StrEnum):
    """Where a task is; the values are what Valkey's scripts write and the API answers."""

    QUEUED = "queued"
    #: Delayed: it runs when due, never before.
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    #: An attempt failed; another is on its way.
    FAILED = "failed"
    #: Out of attempts, or undecodable: in the dead-letter queue with its reason.
    DEAD_LETTERED = "dead-lettered"
    #: Cancelled before it started; its message is dropped when it arrives.
    CANCELLED = "cancelled"
    #: Not started before its ``expires_at``: never run.
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        """No further attempt will run (until an operator redrives the task)."""
        return self in (
            TaskStatus.SUCCEEDED,
            TaskStatus.DEAD_LETTERED,
            TaskStatus.CANCELLED,
            TaskStatus.EXPIRED,
        )


_FINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.DEAD_LETTERED, TaskStatus.CANCELLED, TaskStatus.EXPIRED})
