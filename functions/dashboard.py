"""The operator's dashboard: one self-contained page served by the app, behind the function key.

The page is a single HTML document with its CSS and script inline (no CDN, no build step), assembled
once at import from ``dashboard_page/``. It reads and acts through the app's own HTTP API, so it works
the same under our host, ``func start`` and in Azure. Its Content-Security-Policy allows exactly the
inline style and script it carries, by their hashes, and no other source but the API.
"""

import base64
import dataclasses
import hashlib
from pathlib import Path

import azure.functions as func

from functions.http import Answer, Route, Routes
from shared.pipeline.hooks import RequestScope

bp = func.Blueprint()
routes = Routes(bp)

PAGE_FOLDER = Path(__file__).with_name("dashboard_page")


@dataclasses.dataclass(frozen=True)
class Page:
    """The assembled document and the headers it is served with."""

    html: bytes
    headers: dict[str, str]


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assemble(folder: Path = PAGE_FOLDER) -> Page:
    """``index.html`` with ``dashboard.css`` and ``dashboard.js`` inlined, and a CSP naming their hashes."""
    template = (folder / "index.html").read_text(encoding="utf-8")
    style = "\n" + (folder / "dashboard.css").read_text(encoding="utf-8")
    script = "\n" + (folder / "dashboard.js").read_text(encoding="utf-8")
    if template.count("<style></style>") != 1 or template.count("<script></script>") != 1:
        raise ValueError(f"{folder / 'index.html'} needs one empty <style> and one empty <script>")
    html = template.replace("<style></style>", f"<style>{style}</style>").replace(
        "<script></script>", f"<script>{script}</script>"
    )
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_digest(script)}",
            f"style-src {_digest(style)}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        # The first request carries the key as ?code=; it must not travel on in a Referer.
        "Referrer-Policy": "no-referrer",
    }
    return Page(html.encode(), headers)


PAGE = assemble()


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
    return func.HttpResponse(
        PAGE.html, status_code=200, headers=dict(PAGE.headers), mimetype="text/html", charset="utf-8"
    )
