"""How the API shows a task: its Valkey hash as a JSON document."""

from datetime import UTC, datetime
from typing import Any

import msgspec

from shared.brokers.lanes import NORMAL
from shared.pipeline.status import TaskStatus


def _time(raw: str | None) -> str | None:
    return datetime.fromtimestamp(float(raw), UTC).isoformat() if raw else None


def task_view(task_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """``{id, type, status, attempts, priority, submitted_at, started_at, finished_at, result | error}``."""
    view: dict[str, Any] = {
        "id": task_id,
        "type": fields.get("type"),
        "status": fields.get("status", TaskStatus.QUEUED),
        "attempts": int(fields.get("attempts", "0")),
        "priority": fields.get("priority", NORMAL),
        "submitted_at": _time(fields.get("submitted_at")),
        "started_at": _time(fields.get("started_at")),
        "finished_at": _time(fields.get("finished_at")),
    }
    if "payload" in fields:
        view["payload"] = msgspec.json.decode(fields["payload"])
    if fields.get("trace_id"):
        view["trace_id"] = fields["trace_id"]
    if fields.get("reason"):
        view["reason"] = fields["reason"]
    if "result" in fields and view["status"] == TaskStatus.SUCCEEDED:
        view["result"] = msgspec.json.decode(fields["result"])
    if "error" in fields:
        view["error"] = fields["error"]
    if fields.get("traceback"):
        view["traceback"] = fields["traceback"]
    if fields.get("expires_at"):
        view["expires_at"] = _time(fields["expires_at"])
    if view["status"] == TaskStatus.SCHEDULED and fields.get("due_at"):
        view["due_at"] = _time(fields["due_at"])
    if view["status"] == TaskStatus.FAILED and fields.get("retry_at"):
        view["retry_at"] = _time(fields["retry_at"])
    return view


def task_summary(task_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A task as a list shows it: its status and timings, the error's first line, no result."""
    view = task_view(task_id, fields)
    view.pop("result", None)
    view.pop("traceback", None)
    view.pop("payload", None)
    if "error" in view:
        view["error"] = view["error"].splitlines()[0][:300] if view["error"] else ""
    return view
