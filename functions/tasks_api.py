"""HTTP API for tasks: submit."""

import json

import azure.functions as func

from shared import pipeline, runtime
from shared.errors import BrokerError, ValidationError

bp = func.Blueprint()


@bp.route(route="tasks", methods=["POST"])
async def submit_tasks(req: func.HttpRequest) -> func.HttpResponse:
    try:
        accepted = await pipeline.accept(runtime.broker(), req.get_body())
    except ValidationError as exc:
        body = {"error": "invalid submission", "details": [e.as_dict() for e in exc.errors]}
        return func.HttpResponse(json.dumps(body), status_code=400, mimetype="application/json")
    except BrokerError:
        return func.HttpResponse('{"error":"broker unavailable"}', status_code=503, mimetype="application/json")
    first = accepted[0]
    return func.HttpResponse(
        json.dumps({"id": first.id, "status": first.status}),
        status_code=202,
        mimetype="application/json",
        headers={"Location": f"/api/tasks/{first.id}"},
    )
