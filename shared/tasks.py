"""The app's task types, in :data:`registry`: ``echo``, ``add``, ``sleep``, ``cpu``, ``fail``, ``api_call``.

The composition root is handed this registry explicitly; add a type by decorating an async function
here (or in a module imported here) with ``@registry.task``.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

import msgspec

from shared.pipeline.registry import PermanentError, Registry

#: The app's task types, handed to the pipeline by the composition root.
registry = Registry()


class EchoPayload(msgspec.Struct):
    """Anything: echoed back as the result."""

    message: Any = None


class AddPayload(msgspec.Struct, forbid_unknown_fields=True):
    x: float
    y: float


class SleepPayload(msgspec.Struct, forbid_unknown_fields=True):
    seconds: Annotated[float, msgspec.Meta(ge=0, le=60)]


class CpuPayload(msgspec.Struct, forbid_unknown_fields=True):
    """Key-stretch ``data`` with PBKDF2-SHA256: CPU-bound work of a size the caller chooses."""

    iterations: Annotated[int, msgspec.Meta(ge=1, le=5_000_000)] = 100_000
    data: Annotated[str, msgspec.Meta(max_length=4096)] = "tasklane"


class FailPayload(msgspec.Struct, forbid_unknown_fields=True):
    """``permanent``: raise :class:`PermanentError`, so the task is dead-lettered on its first attempt."""

    reason: Annotated[str, msgspec.Meta(max_length=1024)] = "fail always fails"
    permanent: bool = False


class ApiCallPayload(msgspec.Struct, forbid_unknown_fields=True):
    """How long the call takes (seconds)."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.05


class TaskHandlerError(RuntimeError):
    """What ``fail`` raises."""


@registry.task("echo", timeout=5, max_attempts=3)
async def echo(payload: EchoPayload) -> Any:
    return payload.message


@registry.task("add", timeout=5, max_attempts=3, cache_ttl=300)
async def add(payload: AddPayload) -> float:
    return payload.x + payload.y


@registry.task("sleep", timeout=65, max_attempts=2)
async def sleep(payload: SleepPayload) -> float:
    await asyncio.sleep(payload.seconds)
    return payload.seconds


@registry.task("cpu", timeout=60, max_attempts=2, cache_ttl=600)
async def cpu(payload: CpuPayload) -> str:
    # Off the event loop: hashlib releases the GIL while it hashes, so other tasks keep flowing.
    digest = await asyncio.to_thread(
        hashlib.pbkdf2_hmac, "sha256", payload.data.encode(), b"tasklane", payload.iterations
    )
    return digest.hex()


@registry.task("fail", timeout=5, max_attempts=3)
async def fail(payload: FailPayload) -> None:
    if payload.permanent:
        raise PermanentError(payload.reason)
    raise TaskHandlerError(payload.reason)


@registry.task("api_call", timeout=10, max_attempts=3, rate_limit="10/s", concurrency=4)
async def api_call(payload: ApiCallPayload) -> float:
    """Stands in for a call to a service that allows 10 calls a second, 4 at a time: it only waits
    ``seconds``, but the fleet keeps to those limits as it would for the real service."""
    await asyncio.sleep(payload.seconds)
    return payload.seconds
