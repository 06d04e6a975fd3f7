"""The OpenAPI 3.1 document of the HTTP API, with one payload schema per registered task type."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from shared.pipeline.process import MAX_TASKS_PER_SUBMISSION
from shared.pipeline.registry import Registry, registry

_ERROR = {"$ref": "#/components/schemas/Error"}
_KEY: list[dict[str, list[str]]] = [{"functionKey": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build(reg: Registry) -> dict[str, Any]:
    types = list(reg)
    (payloads, components) = msgspec.json.schema_components(
        [t.payload_type for t in types], ref_template="#/components/schemas/{name}"
    )
    task_variants = [
        {
            "type": "object",
            "title": f"{t.name} task",
            "properties": {"type": {"const": t.name}, "payload": schema},
            "required": ["type"],
            "additionalProperties": False,
        }
        for t, schema in zip(types, payloads, strict=True)
    ]
    components.update(
        {
            "Task": {"oneOf": task_variants},
            "Queued": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
                "required": ["id", "status"],
            },
            "TaskStatus": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "type": {"type": "string"},
                    "status": {"enum": ["queued", "running", "succeeded", "failed", "dead-lettered"]},
                    "attempts": {"type": "integer"},
                    "submitted_at": {"type": ["string", "null"]},
                    "started_at": {"type": ["string", "null"]},
                    "finished_at": {"type": ["string", "null"]},
                    "result": {},
                    "error": {"type": "string"},
                },
                "required": ["id", "status", "attempts"],
            },
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        }
    )
    submit_body = {
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
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tasklane",
            "version": "1.0.0",
            "description": "Submit tasks, follow their status, read the pipeline's figures.",
        },
        "servers": [{"url": "/api"}],
        "security": _KEY,
        "paths": {
            "/tasks": {
                "post": {
                    "operationId": "submitTasks",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": submit_body}},
                    },
                    "responses": {
                        "202": _json(
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Queued"},
                                    {"type": "array", "items": {"$ref": "#/components/schemas/Queued"}},
                                ]
                            },
                            "Accepted: the broker has every message",
                        ),
                        "400": _json(_ERROR, "Invalid submission: each bad index and field is named"),
                        "401": {"description": "Missing or wrong function key"},
                        "413": _json(_ERROR, "Body too large"),
                        "415": _json(_ERROR, "Not application/json"),
                        "429": _json(_ERROR, "Backlog over its limit; see Retry-After"),
                        "503": _json(_ERROR, "Broker or store unavailable"),
                    },
                }
            },
            "/tasks/{id}": {
                "get": {
                    "operationId": "getTask",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/TaskStatus"}, "The task"),
                        "401": {"description": "Missing or wrong function key"},
                        "404": _json(_ERROR, "No such task"),
                    },
                }
            },
            "/stats": {
                "get": {
                    "operationId": "getStats",
                    "responses": {
                        "200": _json({"type": "object"}, "Pipeline figures"),
                        "401": {"description": "Missing or wrong function key"},
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "responses": {
                        "200": _json({"type": "object"}, "Valkey and broker reachable"),
                        "401": {"description": "Missing or wrong function key"},
                        "503": _json({"type": "object"}, "Not ready"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "responses": {
                        "200": _json({"type": "object"}, "This document"),
                        "401": {"description": "Missing or wrong function key"},
                    },
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
        },
    }


@cache
def document() -> dict[str, Any]:
    """The document for the app's registry, built once."""
    return build(registry)
