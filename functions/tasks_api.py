"""HTTP API for tasks: submit, read status, read stats, readiness and the OpenAPI document."""

import azure.functions as func
from opentelemetry.trace import Span

from functions import openapi
from functions.responses import error_response, json_response, problem
from shared import telemetry
from shared.errors import TasklaneError
from shared.pipeline import root as runtime
from shared.pipeline.status import task_view
from shared.store import stats

bp = func.Blueprint()
_SUBMIT = {"http.request.method": "POST", "http.route": "/api/tasks"}


@bp.route(route="tasks", methods=["POST"])
async def submit_tasks(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    trace = context.trace_context
    with telemetry.invocation_span("POST /api/tasks", trace.trace_parent, trace.trace_state, _SUBMIT) as span:
        response = await _submit(req, span)
        if span.is_recording():
            span.set_attribute("http.response.status_code", response.status_code)
        return response


async def _submit(req: func.HttpRequest, span: Span) -> func.HttpResponse:
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return problem(415, "send the tasks as application/json", received=content_type or None)
    body = req.get_body()
    if len(body) > runtime.settings().max_body_bytes:
        return problem(413, "body too large", limit_bytes=runtime.settings().max_body_bytes)
    try:
        accepted = await runtime.accepter().accept(body, req.headers.get("idempotency-key"))
    except TasklaneError as exc:
        return error_response(exc)
    telemetry.set_task_ids(span, accepted.ids)
    items = [{"id": task_id, "status": "queued"} for task_id in accepted.ids]
    location = f"/api/tasks/{accepted.ids[0]}"
    return json_response(items if accepted.is_batch else items[0], 202, {"Location": location})


@bp.route(route="tasks/{id}", methods=["GET"])
async def get_task(req: func.HttpRequest) -> func.HttpResponse:
    task_id = req.route_params["id"]
    try:
        found = await runtime.store().task(task_id)
    except TasklaneError as exc:
        return error_response(exc)
    if found is None:
        return problem(404, "no such task", id=task_id)
    return json_response(task_view(task_id, found))


@bp.route(route="stats", methods=["GET"])
async def get_stats(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return json_response(await stats.snapshot(runtime.store()))
    except TasklaneError as exc:
        return error_response(exc)


@bp.route(route="ready", methods=["GET"])
async def ready(req: func.HttpRequest) -> func.HttpResponse:
    checks = await runtime.readiness()
    return json_response(
        {"ready": all(checks.values()), "checks": checks}, 200 if all(checks.values()) else 503
    )


@bp.route(route="openapi.json", methods=["GET"])
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi.document())
