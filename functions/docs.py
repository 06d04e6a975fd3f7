"""The API's interactive reference: one self-contained page, served anonymously at ``/api/docs``.

It reads ``/api/openapi.json`` (which needs the function key) and lays out every operation with its
parameters, request body and responses, and sends a GET or POST for the reader. The page itself is
static: the same bytes for everyone, holding no key, no figures and no task, so it needs none; the key
the reader gives it stays in that tab's ``sessionStorage``, as the dashboard keeps it. Assembled once at
import from ``docs_page/`` with its CSS and script inline (no CDN: it works offline), and served with a
Content-Security-Policy that allows exactly those by their hashes and no source but the app itself.
"""

from pathlib import Path

import azure.functions as func

from functions.http import Answer, Route, Routes
from functions.pages import assemble
from shared.pipeline.hooks import RequestScope

bp = func.Blueprint()
routes = Routes(bp)

PAGE = assemble(Path(__file__).with_name("docs_page"), "docs", images="data:")


@routes.add(
    Route(
        "docs",
        "GET",
        "docs",
        "This API's interactive reference (an HTML page; the document it reads needs the key)",
        {200: Answer("The reference page", {"type": "string"}, media_type="text/html")},
        auth_level=func.AuthLevel.ANONYMOUS,
    )
)
async def docs(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    return PAGE.response()
