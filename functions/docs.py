"""The API's interactive reference: one self-contained page, served anonymously at ``/api/docs``.

It reads ``/api/openapi.json`` (which needs the function key) and lays out every operation with its
parameters, request body and responses, and sends a GET or POST for the reader. The page itself is
static: the same bytes for everyone, holding no key, no figures and no task, so it needs none; the key
the reader gives it stays in that tab's ``sessionStorage``, as the dashboard keeps it. Assembled once at
import from ``docs_page/`` with its CSS and script inline (no CDN: it works offline), and served with a
Content-Security-Policy that allows exactly those by their hashes and no source but the app itself.
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

PAGE_FOLDER = Path(__file__).with_name("docs_page")


@dataclasses.dataclass(frozen=True)
class Page:
    """The assembled document and the headers it is served with."""

    html: bytes
    headers: dict[str, str]


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assemble(folder: Path = PAGE_FOLDER) -> Page:
    """``index.html`` with ``docs.css`` and ``docs.js`` inlined, and a CSP naming their hashes."""
    template = (folder / "index.html").read_text(encoding="utf-8")
    style = "\n" + (folder / "docs.css").read_text(encoding="utf-8")
    script = "\n" + (folder / "docs.js").read_text(encoding="utf-8")
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
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        # A reader may open it with ?code=<key>; the key must not travel on in a Referer.
        "Referrer-Policy": "no-referrer",
    }
    return Page(html.encode(), headers)


PAGE = assemble()


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
    return func.HttpResponse(
        PAGE.html, status_code=200, headers=dict(PAGE.headers), mimetype="text/html", charset="utf-8"
    )
