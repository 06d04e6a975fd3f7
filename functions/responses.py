"""HttpResponse builders shared by the HTTP blueprints: JSON bodies and tasklane errors."""

from __future__ import annotations

from typing import Any

import azure.functions as func
import msgspec

from shared.errors import BackpressureError, BrokerError, StoreError, TasklaneError, ValidationError

_ENCODER = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        _ENCODER.encode(body), status_code=status, headers=headers, mimetype="application/json"
    )


def problem(status: int, title: str, **extra: Any) -> func.HttpResponse:
    headers = extra.pop("headers", None)
    return json_response({"error": title, **extra}, status, headers)


def error_response(exc: TasklaneError) -> func.HttpResponse:
    """The answer for one of our errors; never a traceback, never a secret."""
    if isinstance(exc, ValidationError):
        return problem(400, "invalid submission", details=[e.as_dict() for e in exc.errors])
    if isinstance(exc, BackpressureError):
        return problem(
            429,
            "backlog over its limit, retry later",
            backlog=exc.backlog,
            limit=exc.limit,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, BrokerError):
        return problem(503, "the queue is not accepting messages right now", headers={"Retry-After": "5"})
    if isinstance(exc, StoreError):
        return problem(503, "the status store is not reachable right now", headers={"Retry-After": "5"})
    return problem(500, "internal error")
