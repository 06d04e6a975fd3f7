"""Helpers that write small function apps into a folder and load them like the host does."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def write_app(
    app_dir: Path, source: str, *, settings: dict[str, str] | None = None, host: str | None = None
) -> Path:
    """Write ``function_app.py`` (and optionally ``local.settings.json``, ``host.json``)."""
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "function_app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    if settings is not None:
        import json

        (app_dir / "local.settings.json").write_text(json.dumps({"Values": settings}), encoding="utf-8")
    (app_dir / "host.json").write_text(host or '{"version": "2.0"}', encoding="utf-8")
    return app_dir


def forget_app(app_dir: Path) -> None:
    """Let the next load import a fresh ``function_app`` (the worker imports it once per process)."""
    sys.modules.pop("function_app", None)
    while str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
