"""Liveness: anonymous, touches nothing, so a load balancer can poll it freely."""

import azure.functions as func

from functions.http import Answer, Route, Routes, json_response
from shared.pipeline.hooks import RequestScope

bp = func.Blueprint()
routes = Routes(bp)


@routes.add(
    Route(
        "health",
        "GET",
        "health",
        "Liveness",
        {200: Answer("Alive", {"$ref": "#/components/schemas/Health"})},
        auth_level=func.AuthLevel.ANONYMOUS,
    )
)
async def health(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    return json_response({"status": "ok"})
