"""The operator's dashboard: one self-contained page served by the app, behind the function key.

The page is a single HTML document with its CSS and script inline (no CDN, no build step), assembled
once at import from ``dashboard_page/``. It reads and acts through the app's own HTTP API, so it works
the same under our host, ``func start`` and in Azure. Its Content-Security-Policy allows exactly the
inline style and script it carries, by their hashes, and no other source but the API.
"""

from pathlib import Path

import azure.functions as func

from functions.http import Answer, Route, Routes
from functions.pages import assemble
from shared.pipeline.hooks import RequestScope

bp = func.Blueprint()
routes = Routes(bp)

PAGE = assemble(Path(__file__).with_name("dashboard_page"), "dashboard", images="'self' data:")


@routes.add(
    Route(
        "dashboard",
        "GET",
        "dashboard",
        "The operator's dashboard (an HTML page; open it once with ?code=<function key>)",
        {200: Answer("The dashboard page", {"type": "string"}, media_type="text/html")},
    )
)
async def dashboard(req: func.HttpRequest, scope: RequestScope) -> func.HttpResponse:
    return PAGE.response()
