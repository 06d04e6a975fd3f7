"""The OpenAPI 3.1 document, generated from the declared routes and the registry's payload schemas.

Every route declares each response it can give (:class:`functions.http.Route`); this module only
lays them out, so the document cannot drift from what the routes answer.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from shared.pipeline.registry import MAX_DELAY_SECONDS, Registry
from shared.pipeline.status import TaskStatus
from shared.pipeline.submission import MAX_TASKS_PER_SUBMISSION

if TYPE_CHECKING:
    from functions.http import Answer, Route

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


def document(registry: Registry, routes: Sequence["Route"]) -> dict[str, Any]:
    """The document for ``routes`` and the task types of ``registry``."""
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
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(registry),
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
        },
    }


def _response(answer: "Answer") -> dict[str, Any]:
    found: dict[str, Any] = {"description": answer.description}
    if answer.schema is not None:
        found["content"] = {"application/json": {"schema": answer.schema}}
    if answer.headers:
        found["headers"] = {name: {"schema": {"type": "string"}} for name in answer.headers}
    return found


def _schemas(registry: Registry) -> dict[str, Any]:
    types = list(registry)
    payloads, components = msgspec.json.schema_components(
        [t.payload_type for t in types], ref_template="#/components/schemas/{name}"
    )
    task_variants = [
        {
            "type": "object",
            "title": f"{t.name} task",
            "properties": {
                "type": {"const": t.name},
                "payload": schema,
                "delay": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_SECONDS},
                "not_before": {"type": "string", "format": "date-time"},
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
                "due_at": {"type": "string", "format": "date-time"},
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
                "submitted_at": {"type": ["string", "null"]},
                "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]},
                "result": {},
                "error": {"type": "string"},
                "traceback": {"type": "string", "description": "The handler's traceback, bounded"},
                "retry_at": {"type": "string", "description": "When the next attempt runs (failed)"},
                "due_at": {"type": "string", "description": "When a delayed task runs (scheduled)"},
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
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}, "dependency": {"enum": ["valkey", "broker"]}},
            "required": ["error"],
        },
    }
