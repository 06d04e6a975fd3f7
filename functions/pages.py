"""Self-contained HTML pages served by the app (the dashboard, the API reference).

Each page is a folder with ``index.html`` (one empty ``<style>`` and one empty ``<script>``), a CSS
and a script file, assembled once at import into a single document with both inline: no CDN, no
build step, it works offline. It is served with a Content-Security-Policy that allows exactly that
style and script, by their hashes, and no source but the app itself.
"""

import base64
import dataclasses
import hashlib
from pathlib import Path

import azure.functions as func


@dataclasses.dataclass(frozen=True)
class Page:
    """The assembled document and the headers it is served with."""

    html: bytes
    headers: dict[str, str]

    def response(self) -> func.HttpResponse:
        return func.HttpResponse(
            self.html, status_code=200, headers=dict(self.headers), mimetype="text/html", charset="utf-8"
        )


#: DOM helpers every page's script uses, inlined before it.
_SHARED_SCRIPT = Path(__file__).with_name("pages.js")


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def assemble(folder: Path, name: str, *, images: str = "data:") -> Page:
    """``index.html`` of ``folder`` with ``<name>.css`` and ``pages.js`` + ``<name>.js`` inlined, and a CSP
    naming their hashes; ``images`` are the sources ``img-src`` allows."""
    template = (folder / "index.html").read_text(encoding="utf-8")
    style = "\n" + (folder / f"{name}.css").read_text(encoding="utf-8")
    shared = _SHARED_SCRIPT.read_text(encoding="utf-8")
    script = "\n" + shared + (folder / f"{name}.js").read_text(encoding="utf-8")
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
            f"img-src {images}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        # A page may be opened with ?code=<key>; the key must not travel on in a Referer.
        "Referrer-Policy": "no-referrer",
    }
    return Page(html.encode(), headers)
