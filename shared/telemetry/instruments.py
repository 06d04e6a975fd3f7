"""The pipeline's metrics: instruments created once telemetry is configured, and what records them.

SigNoz's alert rules and dashboard (``infra/signoz``) query these names; a test keeps them in step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry import metrics

from shared.brokers.lanes import lane_queue

if TYPE_CHECKING:
    from shared.brokers.base import Backlog
    from shared.pipeline.envelope import TaskEnvelope
    from shared.pipeline.outcome import Outcome

#: Histogram buckets in seconds, from a cache hit to a long handler.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Instruments:
    """The pipeline's instruments, created when telemetry is configured (SigNoz reads these names)."""

    def create(self, meter: metrics.Meter) -> None:
        self.accepted = meter.create_counter("tasklane.tasks.accepted", "{task}", "Tasks accepted")
        self.processed = meter.create_counter(
            "tasklane.tasks.processed", "{task}", "Task attempts finished, by type and outcome"
        )
        self.duration = meter.create_histogram(
            "tasklane.task.duration",
            "s",
            "Handler time per attempt",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.queue_wait = meter.create_histogram(
            "tasklane.task.queue_wait",
            "s",
            "From acceptance to the start of processing",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self.cache_hits = meter.create_counter("tasklane.cache.hits", "{lookup}", "Result-cache hits")
        self.cache_misses = meter.create_counter("tasklane.cache.misses", "{lookup}", "Result-cache misses")
        self.backlog = meter.create_gauge(
            "tasklane.queue.backlog", "{message}", "Messages in the queue, by state"
        )


instruments = Instruments()


def outcome_name(outcome: Outcome) -> str:
    """``succeeded``, ``failed`` (will be retried) or ``dead_lettered``."""
    if outcome.error is None:
        return "succeeded"
    return "dead_lettered" if outcome.final else "failed"


def record_accepted(envelopes: Sequence[TaskEnvelope]) -> None:
    for task_type, count in Counter(e.type for e in envelopes).items():
        instruments.accepted.add(count, {"type": task_type})


def record_outcomes(outcomes: Sequence[Outcome]) -> None:
    for outcome in outcomes:
        envelope = outcome.envelope
        labels = {"type": envelope.type, "outcome": outcome_name(outcome)}
        instruments.processed.add(1, labels)
        instruments.duration.record(outcome.duration, labels)
        instruments.queue_wait.record(
            max(0.0, outcome.started_at - envelope.submitted_at), {"type": envelope.type}
        )
        if outcome.cache_hit is not None:
            counter = instruments.cache_hits if outcome.cache_hit else instruments.cache_misses
            counter.add(1, {"type": envelope.type})


def record_backlog(backlog: Backlog) -> None:
    """Set the backlog gauges, one point per state the broker reports; active messages per priority
    lane (attributes ``queue``, the lane's own, and ``priority``) when the broker has lanes."""
    if backlog.lanes:
        for priority, count in backlog.lanes.items():
            lane = {"queue": lane_queue(backlog.queue, priority), "state": "active", "priority": priority}
            instruments.backlog.set(count, lane)
    else:
        instruments.backlog.set(backlog.active, {"queue": backlog.queue, "state": "active"})
    states = {"dead_lettered": backlog.dead_lettered}
    if backlog.scheduled is not None:
        states["scheduled"] = backlog.scheduled
    for state, count in states.items():
        instruments.backlog.set(count, {"queue": backlog.queue, "state": state})
