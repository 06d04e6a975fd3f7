"""``GET /api/metrics``: the pipeline's figures in the Prometheus text exposition format.

Fleet-wide, from Valkey (every instance's counts, not this process's), for Kubernetes and Grafana
users; the same names as the OpenTelemetry metrics, with Prometheus's underscores and suffixes.
"""

from collections.abc import Iterator
from typing import Any

import azure.functions as func

from functions.http import Answer, Route, Routes
from shared.brokers.lanes import lane_queue
from shared.errors import StoreError
from shared.pipeline.hooks import RequestScope
from shared.pipeline.root import pipeline
from shared.store.histogram import BOUNDS
from shared.store.stats import Figures

bp = func.Blueprint()
routes = Routes(bp)

#: What Prometheus's text format 0.0.4 is served as.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_COUNTERS = {
    "redriven": "Tasks sent again by a retry or redrive",
    "cancelled": "Tasks cancelled before they started",
    "undecodable": "Messages that were not tasks, dead-lettered",
    "dead_lettered": "Tasks dead-lettered (out of attempts, or failed permanently)",
    "expired": "Tasks not started before their expiry, never run",
    "throttled": "Deliveries put off by their task type's rate or concurrency limit (no attempt)",
}


@routes.add(
    Route(
        "metrics",
        "GET",
        "metrics",
        "The pipeline's figures in the Prometheus text format",
        {
            200: Answer(
                "Prometheus text exposition 0.0.4", {"type": "string"}, media_type="text/plain; version=0.0.4"
            )
        },
    ),
    raises=(StoreError,),
)
async def metrics(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    figures = await pipeline().store.figures()
    return func.HttpResponse(
        "".join(exposition(figures)), status_code=200, headers={"Content-Type": CONTENT_TYPE}
    )


def exposition(figures: Figures) -> Iterator[str]:
    """The lines of the exposition, each ending in a newline."""
    counters = figures.counters
    yield from _family("tasklane_tasks_accepted_total", "counter", "Tasks accepted")
    for task_type, count in _per_type(counters, "accepted"):
        yield _sample("tasklane_tasks_accepted_total", count, type=task_type)
    yield from _family("tasklane_tasks_processed_total", "counter", "Task attempts finished, by outcome")
    for task_type, count in _per_type(counters, "processed"):
        yield _sample("tasklane_tasks_processed_total", count, type=task_type, outcome="succeeded")
    for task_type, count in _per_type(counters, "failed"):
        yield _sample("tasklane_tasks_processed_total", count, type=task_type, outcome="failed")
    for name, help_text in _COUNTERS.items():
        metric = f"tasklane_tasks_{name}_total"
        yield from _family(metric, "counter", help_text)
        yield _sample(metric, counters.get(name, 0))
    yield from _family("tasklane_cache_lookups_total", "counter", "Result-cache lookups")
    yield _sample("tasklane_cache_lookups_total", counters.get("cache_hits", 0), result="hit")
    yield _sample("tasklane_cache_lookups_total", counters.get("cache_misses", 0), result="miss")
    yield from _family("tasklane_cache_keys", "gauge", "Live result-cache keys")
    yield _sample("tasklane_cache_keys", figures.cache_keys)
    yield from _histogram("tasklane_task_duration_seconds", "Handler time per attempt", figures.duration)
    yield from _histogram(
        "tasklane_task_queue_wait_seconds", "From acceptance to the start of processing", figures.queue_wait
    )
    yield from _family(
        "tasklane_backlog_unfinished", "gauge", "Tasks accepted and not finished: what admission counts"
    )
    yield _sample("tasklane_backlog_unfinished", counters.get("unfinished", 0))
    backlog = figures.backlog
    if backlog is not None:
        yield from _family(
            "tasklane_queue_backlog", "gauge", "Messages in the queue, by state (last snapshot)"
        )
        yield from _backlog_samples(backlog)


def _backlog_samples(backlog: dict[str, Any]) -> Iterator[str]:
    """Active messages per priority lane (each lane's queue), dead-lettered and scheduled ones per app."""
    queue, lanes = backlog["queue"], backlog.get("lanes")
    if lanes:
        for priority, count in lanes.items():
            yield _sample(
                "tasklane_queue_backlog",
                count,
                queue=lane_queue(queue, priority),
                state="active",
                priority=priority,
            )
    else:
        yield _sample("tasklane_queue_backlog", backlog["active"], queue=queue, state="active")
    for state in ("dead_lettered", "scheduled"):
        if backlog.get(state) is not None:
            yield _sample("tasklane_queue_backlog", backlog[state], queue=queue, state=state)


def _histogram(name: str, help_text: str, counts: dict[int, int]) -> Iterator[str]:
    yield from _family(name, "histogram", help_text)
    cumulative = 0
    total = 0.0
    for index, bound in enumerate(BOUNDS):
        count = counts.get(index, 0)
        cumulative += count
        total += count * bound  # the sum is known to the bucket: each value counts as its bucket's bound
        if count or index == len(BOUNDS) - 1:
            yield _sample(f"{name}_bucket", cumulative, le=f"{bound:.6g}")
    yield _sample(f"{name}_bucket", cumulative, le="+Inf")
    yield _sample(f"{name}_sum", round(total, 6))
    yield _sample(f"{name}_count", cumulative)


def _per_type(counters: dict[str, int], kind: str) -> list[tuple[str, int]]:
    prefix = f"{kind}:"
    return sorted((name[len(prefix) :], value) for name, value in counters.items() if name.startswith(prefix))


def _family(name: str, kind: str, help_text: str) -> Iterator[str]:
    yield f"# HELP {name} {help_text}\n"
    yield f"# TYPE {name} {kind}\n"


def _sample(name: str, value: float, **labels: str) -> str:
    if not labels:
        return f"{name} {value}\n"
    text = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return f"{name}{{{text}}} {value}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
