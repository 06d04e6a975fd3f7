"""HTTP API for tasks: submit, read status, read stats, readiness and the OpenAPI document."""

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import azure.functions as func

from functions import openapi
from functions.http import DECLARED, ERROR_SCHEMA, Answer, Route, Routes, json_response, problem
from functions.views import task_summary, task_view
from shared.errors import (
    BackpressureError,
    BrokerError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyMismatchError,
    RateLimitedError,
    StoreError,
    TaskNotFoundError,
    TaskStateError,
    ValidationError,
)
from shared.pipeline.hooks import RequestScope
from shared.pipeline.root import pipeline
from shared.pipeline.status import TaskStatus
from shared.store.listing import parse_cursor

bp = func.Blueprint()
routes = Routes(bp)

#: The most tasks one page of a listing holds.
MAX_PAGE = 200
_STATUS_NAMES = frozenset(s.value for s in TaskStatus)


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _path_id() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


_PAGE = (
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
    _query("cursor", {"type": "string"}),
)
_TASK_PAGE = {"$ref": "#/components/schemas/TaskPage"}

_QUEUED = {
    "oneOf": [
        {"$ref": "#/components/schemas/Queued"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Queued"}},
    ]
}


@routes.add(
    Route(
        "submitTasks",
        "POST",
        "tasks",
        "Submit one task or an array of up to 1,000",
        {
            202: Answer(
                "Accepted: the broker has every message (or, with Idempotency-Key, the first answer again)",
                _QUEUED,
                ("Location", "Idempotent-Replayed"),
            ),
            413: Answer("Body too large", ERROR_SCHEMA),
            415: Answer("Not application/json", ERROR_SCHEMA),
        },
        parameters=(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
            },
        ),
        request_body=openapi.SUBMISSION,
    ),
    raises=(
        ValidationError,
        BackpressureError,
        BrokerError,
        StoreError,
        IdempotencyConflictError,
        IdempotencyMismatchError,
        RateLimitedError,
    ),
)
async def submit_tasks(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return problem(415, "send the tasks as application/json", received=content_type or None)
    body = req.get_body()
    found = pipeline()
    if len(body) > found.settings.max_body_bytes:
        return problem(413, "body too large", limit_bytes=found.settings.max_body_bytes)
    accepted = await found.accepter.accept(body, req.headers.get("idempotency-key"), _caller(req))
    scope.tasks(accepted.ids)
    due = accepted.due or [None] * len(accepted.ids)
    items = [_queued(task_id, when) for task_id, when in zip(accepted.ids, due, strict=True)]
    headers = {"Location": f"/api/tasks/{accepted.ids[0]}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(items if accepted.is_batch else items[0], 202, headers)


def _caller(req: func.HttpRequest) -> str:
    """Who submits, for the rate limit: a hash of the function key presented ('' for none)."""
    key = req.headers.get("x-functions-key") or req.params.get("code") or ""
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""


def _queued(task_id: str, due: float | None) -> dict[str, Any]:
    if due is None:
        return {"id": task_id, "status": TaskStatus.QUEUED}
    return {
        "id": task_id,
        "status": TaskStatus.SCHEDULED,
        "due_at": datetime.fromtimestamp(due, UTC).isoformat(),
    }


@routes.add(
    Route(
        "getTask",
        "GET",
        "tasks/{id}",
        "A task's status, attempts, timings, and result or error",
        {
            200: Answer("The task", {"$ref": "#/components/schemas/TaskStatus"}),
            404: Answer("No such task", ERROR_SCHEMA),
        },
        parameters=(_path_id(),),
    ),
    raises=(StoreError,),
)
async def get_task(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    task_id = req.route_params["id"]
    scope.tasks([task_id])
    found = await pipeline().store.task(task_id)
    if found is None:
        return problem(404, "no such task", id=task_id)
    return json_response(task_view(task_id, found))


@routes.add(
    Route(
        "listTasks",
        "GET",
        "tasks",
        "Tasks newest first, by status and type, a page at a time",
        {
            200: Answer(
                "A page of tasks and the cursor of the next", {"$ref": "#/components/schemas/TaskPage"}
            )
        },
        parameters=(
            {
                "name": "status",
                "in": "query",
                "required": False,
                "schema": {"enum": [s.value for s in TaskStatus]},
            },
            {"name": "type", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
            },
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        ),
    ),
    raises=(ValidationError, StoreError),
)
async def list_tasks(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    status, task_type, limit, cursor = _listing_query(req.params)
    found = await pipeline().store.tasks(status=status, task_type=task_type, limit=limit, cursor=cursor)
    return json_response({"tasks": [task_summary(i, f) for i, f in found.tasks], "cursor": found.cursor})


def _listing_query(params: Mapping[str, str]) -> tuple[str | None, str | None, int, str | None]:
    errors = []
    status = params.get("status") or None
    if status is not None and status not in _STATUS_NAMES:
        errors.append(FieldError(None, "status", f"one of {', '.join(sorted(_STATUS_NAMES))}"))
    raw_limit = params.get("limit") or "50"
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= MAX_PAGE:
        errors.append(FieldError(None, "limit", f"a whole number from 1 to {MAX_PAGE}"))
    cursor = params.get("cursor") or None
    try:
        parse_cursor(cursor)
    except ValueError as exc:
        errors.append(FieldError(None, "cursor", str(exc)))
    if errors:
        raise ValidationError(errors)
    return status, params.get("type") or None, limit, cursor


@routes.add(
    Route(
        "cancelTask",
        "DELETE",
        "tasks/{id}",
        "Cancel a queued or scheduled task before it starts",
        {200: Answer("Cancelled", {"$ref": "#/components/schemas/Queued"})},
        parameters=(_path_id(),),
    ),
    raises=(TaskNotFoundError, TaskStateError, StoreError),
)
async def cancel_task(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    task_id = req.route_params["id"]
    scope.tasks([task_id])
    before = await pipeline().store.cancel(task_id)
    if before is None:
        raise TaskNotFoundError(f"no task {task_id}")
    if before not in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
        raise TaskStateError(
            f"task {task_id} is {before}: only a queued or scheduled task can be cancelled", before
        )
    return json_response({"id": task_id, "status": TaskStatus.CANCELLED})


@routes.add(
    Route(
        "listDeadLetters",
        "GET",
        "dead-letters",
        "Dead-lettered tasks, newest first, with why",
        {200: Answer("A page of dead-lettered tasks", {"$ref": "#/components/schemas/TaskPage"})},
        parameters=(
            {"name": "type", "in": "query", "required": False, "schema": {"type": "string"}},
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            },
            {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
        ),
    ),
    raises=(ValidationError, StoreError),
)
async def list_dead_letters(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    _, task_type, limit, cursor = _listing_query({**req.params, "status": TaskStatus.DEAD_LETTERED})
    store = pipeline().store
    dead = TaskStatus.DEAD_LETTERED
    found = await store.tasks(status=dead, task_type=task_type, limit=limit, cursor=cursor)
    # Messages that were not tasks have no task to list: the last ones come along, on the first page.
    undecodable = await store.undecodable() if cursor is None and task_type is None else []
    return json_response(
        {
            "tasks": [task_summary(i, f) for i, f in found.tasks],
            "cursor": found.cursor,
            "undecodable": undecodable,
        }
    )


@routes.add(
    Route(
        "purgeDeadLetters",
        "DELETE",
        "dead-letters",
        "Empty the dead-letter queue (only the tasks of ?type=, when given); their statuses stay",
        {200: Answer("How many dead letters were removed", {"$ref": "#/components/schemas/Purged"})},
        parameters=(_query("type", {"type": "string"}),),
    ),
    raises=(BrokerError, StoreError),
)
async def purge_dead_letters(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    task_type = req.params.get("type") or None
    return json_response({"purged": await pipeline().redriver.purge(task_type), "type": task_type})


@routes.add(
    Route(
        "retryTask",
        "POST",
        "tasks/{id}/retry",
        "Send a failed or dead-lettered task again, its attempts reset",
        {202: Answer("Sent again", {"$ref": "#/components/schemas/Queued"}, ("Location",))},
        parameters=(_path_id(),),
    ),
    raises=(TaskNotFoundError, TaskStateError, BrokerError, StoreError),
)
async def retry_task(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    task_id = req.route_params["id"]
    scope.tasks([task_id])
    await pipeline().redriver.retry(task_id)
    return json_response(_queued(task_id, None), 202, {"Location": f"/api/tasks/{task_id}"})


@routes.add(
    Route(
        "redriveDeadLetters",
        "POST",
        "dead-letters/redrive",
        "Send every dead-lettered task again (of one type, with ?type=), their attempts reset",
        {200: Answer("How many were sent again", {"$ref": "#/components/schemas/Redriven"})},
        parameters=(_query("type", {"type": "string"}),),
    ),
    raises=(BrokerError, StoreError),
)
async def redrive_dead_letters(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    task_type = req.params.get("type") or None
    return json_response({"redriven": await pipeline().redriver.redrive_all(task_type), "type": task_type})


@routes.add(
    Route(
        "getStats",
        "GET",
        "stats",
        "Backlog (per priority lane), admission, totals, throughput, latency percentiles, cache figures"
        " and the task types' limits",
        {200: Answer("Pipeline figures", {"$ref": "#/components/schemas/Stats"})},
    ),
    raises=(StoreError,),
)
async def get_stats(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    running = pipeline()
    stats = await running.store.stats()
    stats["admission"]["limit"] = running.settings.max_backlog
    limited = [t for t in running.registry if t.limited]
    stats["limits"] = {t.name: {"rate_limit": t.rate_limit, "concurrency": t.concurrency} for t in limited}
    return json_response(stats)


@routes.add(
    Route(
        "ready",
        "GET",
        "ready",
        "Whether Valkey and the broker answer",
        {
            200: Answer("Valkey and broker reachable", {"$ref": "#/components/schemas/Readiness"}),
            503: Answer(
                "Not ready: the checks name what does not answer", {"$ref": "#/components/schemas/Readiness"}
            ),
        },
    )
)
async def ready(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    checks = await pipeline().readiness()
    return json_response(
        {"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503
    )


@routes.add(
    Route(
        "openapi",
        "GET",
        "openapi.json",
        "This document",
        {200: Answer("This document", {"$ref": "#/components/schemas/Document"})},
    )
)
async def openapi_document(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    return json_response(
        openapi.document(pipeline().registry, DECLARED, openapi.server_url(req.url, req.headers))
    )
