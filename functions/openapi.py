"""The OpenAPI 3.1 document, generated from the declared routes and the registry's payload schemas.

Every route declares each response it can give (:class:`functions.http.Route`); this module only
lays them out, so the document cannot drift from what the routes answer.
"""

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from shared.brokers.lanes import PRIORITIES
from shared.pipeline.registry import MAX_DELAY_SECONDS, Registry, TaskType
from shared.pipeline.status import TaskStatus
from shared.pipeline.submission import MAX_TASKS_PER_SUBMISSION
from shared.store.stats import PER_TYPE, TOTALS

if TYPE_CHECKING:
    from functions.http import Answer, Route

#: A host name or address with an optional port: what an ``X-Forwarded-Host`` may name.
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_TIMESTAMP = {"type": "string", "format": "date-time"}
_MAYBE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_COUNT = {"type": "integer", "minimum": 0}
_UNIX_TIME = {"type": "number", "description": "Unix time, in seconds"}

#: The request body of ``POST /api/tasks``: one task, or an array of them.
SUBMISSION: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Task"},
                    {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Task"},
                        "minItems": 1,
                        "maxItems": MAX_TASKS_PER_SUBMISSION,
                    },
                ]
            }
        }
    },
}


def server_url(url: str, headers: Mapping[str, str]) -> str:
    """The API's absolute base URL as the client reached it, from the URL of a request to one of its
    routes (``https://host/api/openapi.json`` → ``https://host/api``).

    Behind a front end (Azure's, a reverse proxy) the request carries the client's scheme and host in
    ``X-Forwarded-Proto`` and ``X-Forwarded-Host``; those win when they are well formed, so a client
    generated from the document calls the address it was given, not the one the front end forwarded to.
    """
    parts = urlsplit(url)
    proto = _first(headers.get("x-forwarded-proto")).lower()
    host = _first(headers.get("x-forwarded-host"))
    scheme = proto if proto in ("http", "https") else parts.scheme
    netloc = host if _HOST.fullmatch(host) else parts.netloc
    return f"{scheme}://{netloc}{parts.path.rpartition('/')[0]}"


def _first(value: str | None) -> str:
    """The first of a header's comma-separated values: the one the outermost front end set."""
    return (value or "").split(",")[0].strip()


def document(registry: Registry, routes: Sequence["Route"], server: str = "/api") -> dict[str, Any]:
    """The document for ``routes`` and the task types of ``registry``, served from ``server`` (the
    absolute URL from :func:`server_url` when served; relative by default)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "responses": {str(status): _response(answer) for status, answer in route.documented().items()},
        }
        if route.parameters:
            operation["parameters"] = list(route.parameters)
        if route.request_body is not None:
            operation["requestBody"] = route.request_body
        if route.auth_level.value == "anonymous":
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tasklane",
            "version": "1.0.0",
            "description": "Submit tasks, follow their status, read the pipeline's figures.",
        },
        "servers": [{"url": server}],
        "security": [{"functionKey": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(registry),
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
        },
    }


def _response(answer: "Answer") -> dict[str, Any]:
    found: dict[str, Any] = {"description": answer.description}
    if answer.media_type is not None:  # no content: the answer has no body
        found["content"] = {answer.media_type: {} if answer.schema is None else {"schema": answer.schema}}
    if answer.headers:
        found["headers"] = {name: {"schema": {"type": "string"}} for name in answer.headers}
    return found


def _limits(task_type: TaskType) -> str:
    parts = [f"at most {task_type.rate_limit}"] if task_type.rate_limit else []
    parts += [f"{task_type.concurrency} at once"] if task_type.concurrency else []
    return f"Fleet-wide: {' and '.join(parts)}; a delivery over the limit waits its turn (no attempt)"


def _schemas(registry: Registry) -> dict[str, Any]:
    types = list(registry)
    payloads, components = msgspec.json.schema_components(
        [t.payload_type for t in types], ref_template="#/components/schemas/{name}"
    )
    task_variants = [
        {
            "type": "object",
            "title": f"{t.name} task",
            **({"description": _limits(t)} if t.limited else {}),
            "properties": {
                "type": {"const": t.name},
                "payload": schema,
                "priority": {
                    "enum": list(PRIORITIES),
                    "default": "normal",
                    "description": "Its lane: a high task waits only behind other high tasks",
                },
                "delay": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
                "not_before": {"type": "string", "format": "date-time"},
                "expires_in": {"type": "number", "minimum": 1, "maximum": MAX_DELAY_SECONDS},
                "expires_at": {"type": "string", "format": "date-time"},
            },
            "required": ["type"],
            "additionalProperties": False,
        }
        for t, schema in zip(types, payloads, strict=True)
    ]
    return components | {
        "Task": {"oneOf": task_variants},
        "Queued": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {
                    "enum": [TaskStatus.QUEUED.value, TaskStatus.SCHEDULED.value, TaskStatus.CANCELLED.value]
                },
                "due_at": _TIMESTAMP,
            },
            "required": ["id", "status"],
        },
        "TaskStatus": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "type": {"type": "string"},
                "status": {"enum": [s.value for s in TaskStatus]},
                "attempts": {"type": "integer"},
                "priority": {"enum": list(PRIORITIES)},
                "submitted_at": _MAYBE_TIMESTAMP,
                "started_at": _MAYBE_TIMESTAMP,
                "finished_at": _MAYBE_TIMESTAMP,
                "payload": {"description": "What the task was submitted with (not in a listing)"},
                "result": {},
                "error": {"type": "string"},
                "reason": {"type": "string", "description": "Why it was dead-lettered"},
                "traceback": {"type": "string", "description": "The handler's traceback, bounded"},
                "trace_id": {"type": "string"},
                "retry_at": _TIMESTAMP | {"description": "When the next attempt runs (failed)"},
                "due_at": _TIMESTAMP | {"description": "When a delayed task runs (scheduled)"},
                "expires_at": _TIMESTAMP | {"description": "When it may no longer start"},
            },
            "required": ["id", "status", "attempts"],
        },
        "TaskPage": {
            "type": "object",
            "properties": {
                "tasks": {"type": "array", "items": {"$ref": "#/components/schemas/TaskStatus"}},
                "cursor": {"type": ["string", "null"], "description": "Pass it back for the next page"},
            },
            "required": ["tasks", "cursor"],
        },
        "Purged": {
            "type": "object",
            "properties": {"purged": {"type": "integer"}, "type": {"type": ["string", "null"]}},
            "required": ["purged"],
        },
        "Redriven": {
            "type": "object",
            "properties": {"redriven": {"type": "integer"}, "type": {"type": ["string", "null"]}},
            "required": ["redriven"],
        },
        **_FIGURES,
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "dependency": {"enum": ["valkey", "broker"]}},
            "required": ["error"],
        },
    }


def _object(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """An object schema whose properties are all required but ``optional``."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, "required": required}


#: ``/api/stats`` (:func:`shared.store.stats.snapshot`), ``/api/ready`` and ``/api/health``.
_FIGURES: dict[str, Any] = {
    "Backlog": _object(
        {
            "queue": {"type": "string"},
            "active": _COUNT,
            "dead_lettered": _COUNT,
            "scheduled": {"type": ["integer", "null"], "description": "Null where the broker cannot tell"},
            "taken_at": _UNIX_TIME,
            "age_seconds": {"type": "number", "description": "How old this snapshot is"},
            "lanes": {
                "type": ["object", "null"],
                "description": "Active messages per priority lane",
                "properties": {p: _COUNT for p in PRIORITIES},
            },
        },
        "lanes",
    ),
    "Percentiles": _object(
        {name: {"type": ["number", "null"], "minimum": 0} for name in ("p50", "p90", "p95", "p99")}
    )
    | {"description": "Seconds; null before anything was measured"},
    "Stats": _object(
        {
            "backlog": {
                "oneOf": [{"$ref": "#/components/schemas/Backlog"}, {"type": "null"}],
                "description": "The last snapshot the backlog timer took; null before the first",
            },
            "admission": _object(
                {
                    "unfinished": _COUNT | {"description": "Tasks accepted and not finished, counted live"},
                    "limit": _COUNT | {"description": "TASKS_MAX_BACKLOG: at it, submissions answer 429"},
                }
            ),
            "limits": {
                "type": "object",
                "description": "Task type → its fleet-wide limits (types with none are left out)",
                "additionalProperties": _object(
                    {
                        "rate_limit": {"type": ["string", "null"], "examples": ["10/s"]},
                        "concurrency": {"type": ["integer", "null"], "minimum": 1},
                    }
                ),
            },
            "totals": _object(dict.fromkeys(TOTALS, _COUNT)),
            "per_type": {
                "type": "object",
                "description": "Task type → its counts",
                "additionalProperties": _object(dict.fromkeys(PER_TYPE, _COUNT)),
            },
            "throughput": _object(
                {
                    "window_seconds": _COUNT,
                    "processed": _COUNT,
                    "per_second": {"type": "number", "minimum": 0},
                    "accepted": _COUNT,
                    "accepted_per_second": {"type": "number", "minimum": 0},
                },
                "accepted",
                "accepted_per_second",
            )
            | {"description": "Over the last window_seconds"},
            "latency_seconds": _object(
                {
                    "queue_wait": {"$ref": "#/components/schemas/Percentiles"},
                    "processing": {"$ref": "#/components/schemas/Percentiles"},
                }
            ),
            "cache": _object(
                {
                    "hits": _COUNT,
                    "misses": _COUNT,
                    "keys": _COUNT | {"description": "Live result-cache keys"},
                    "hit_ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                }
            ),
            "taken_at": _UNIX_TIME,
        }
    ),
    "Readiness": _object(
        {
            "ready": {"type": "boolean"},
            "checks": _object({"valkey": {"type": "boolean"}, "broker": {"type": "boolean"}}),
        }
    ),
    "Health": _object({"status": {"const": "ok"}}),
    "Document": {
        "type": "object",
        "description": "An OpenAPI 3.1 document",
        "required": ["openapi", "info", "paths"],
    },
}
