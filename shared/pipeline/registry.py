"""The task registry: each task type is one decorated async function.

The handler's single parameter is annotated with a ``msgspec.Struct`` that is the payload schema;
the registry validates payloads against it (naming the field at fault) and publishes it as JSON
Schema for the OpenAPI document::

    class AddPayload(msgspec.Struct, forbid_unknown_fields=True):
        x: float
        y: float

    @tasks.task("add", timeout=5, max_attempts=3, cache_ttl=300)
    async def add(payload: AddPayload) -> float:
        return payload.x + payload.y

A handler that calls a rate-limited service says so, and the whole fleet keeps to it
(:mod:`shared.store.limits`)::

    @tasks.task("geocode", rate_limit="10/s", concurrency=2)
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from shared.errors import ConfigError
from shared.platform.backoff import backoff_delay

Handler = Callable[[Any], Awaitable[Any]]

#: At most this many attempts a task type may ask for. A failed attempt is re-sent as a new message, so
#: the brokers' own delivery limits (the RabbitMQ extension's 5th failure, Service Bus's
#: MaxDeliveryCount 5 in infra/) only catch crashes; a test keeps the three equal.
MAX_ATTEMPTS_LIMIT = 5
#: The longest a task may be put off: a delay asked for at submission, or a retry's backoff (7 days).
MAX_DELAY_SECONDS = 7 * 24 * 3600

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_RATE = re.compile(r"^(?P<count>[0-9]+(?:\.[0-9]+)?)/(?P<unit>[smh])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(text: str) -> float:
    """Tasks per second of a rate such as ``"10/s"``, ``"600/m"`` or ``"0.5/s"``; ValueError otherwise."""
    match = _RATE.match(text.strip())
    count = float(match.group("count")) if match else 0.0
    if match is None or count <= 0:
        raise ValueError(f"rate_limit '{text}' is not a positive '<number>/s', '/m' or '/h' (e.g. '10/s')")
    return count / _SECONDS[match.group("unit")]


@dataclass(frozen=True)
class TaskType:
    """A registered task type and how it runs."""

    name: str
    handler: Handler
    payload_type: type[msgspec.Struct]
    timeout: float
    max_attempts: int
    cache_ttl: int | None
    #: Seconds before the second attempt; it doubles after each failure, up to ``backoff_max``.
    backoff: float = 1.0
    backoff_max: float = 300.0
    #: The fleet-wide limits as declared (``"10/s"``), in tasks per second, and how many may run at once.
    rate_limit: str | None = None
    rate_per_second: float | None = None
    concurrency: int | None = None

    @property
    def limited(self) -> bool:
        """Whether its deliveries must ask :mod:`shared.store.limits` before they run."""
        return self.rate_per_second is not None or self.concurrency is not None

    def limits(self) -> dict[str, str | int]:
        """Its limits as declared, the unset left out: ``{"rate_limit": "10/s", "concurrency": 4}``."""
        found: dict[str, str | int] = {}
        if self.rate_limit is not None:
            found["rate_limit"] = self.rate_limit
        if self.concurrency is not None:
            found["concurrency"] = self.concurrency
        return found

    def retry_delay(self, failed_attempt: int, jitter: float) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed; ``jitter`` in ``[0, 1]``."""
        return backoff_delay(failed_attempt, jitter, base=self.backoff, cap=self.backoff_max)

    def validate(self, payload: object) -> msgspec.Struct:
        """The payload as its schema type; :class:`PayloadError` names the field at fault."""
        try:
            return msgspec.convert(payload, self.payload_type)
        except msgspec.ValidationError as exc:
            raise PayloadError.from_msgspec(exc) from exc


class PermanentError(Exception):
    """Raise it (or a subclass) from a handler when retrying cannot help: the attempt is the last.

    The task is dead-lettered at once with this error, whatever attempts it had left, as arq's
    ``Retry``'s opposite and dramatiq's ``throws`` let a handler say.
    """


class PayloadError(ValueError):
    """A payload that does not fit its schema: ``field`` is a dotted path under ``payload``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @classmethod
    def from_msgspec(cls, exc: msgspec.ValidationError) -> PayloadError:
        match = _AT.match(str(exc))
        message = match.group("message") if match else str(exc)
        path = (match.group("path") if match else None) or ""
        # msgspec says "$.a.b" or "$[0]"; we speak of "payload.a.b".
        field = "payload" + path
        if message.startswith("Object missing required field"):
            missing = message.split("`")[1]
            field, message = f"{field}.{missing}", "required"
        elif message.startswith("Object contains unknown field"):
            unknown = message.split("`")[1]
            field, message = f"{field}.{unknown}", "unknown field"
        return cls(field, message)


class Registry:
    """Task types by name."""

    def __init__(self) -> None:
        self._types: dict[str, TaskType] = {}

    def task(
        self,
        name: str | None = None,
        *,
        timeout: float = 30.0,
        max_attempts: int = 3,
        cache_ttl: int | None = None,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        rate_limit: str | None = None,
        concurrency: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register an async handler whose one parameter's annotation is its payload schema.

        A failed attempt is retried after ``backoff`` seconds, doubling after each failure up to
        ``backoff_max`` (half of each wait is random, so failures do not come back in step).

        ``rate_limit`` (``"10/s"``, ``"600/m"``, ``"0.5/s"``) and ``concurrency`` hold across every
        instance: a delivery over either waits its turn or is put off, never failed and never counted
        as an attempt.
        """

        def register(handler: Handler) -> Handler:
            task_name = name or handler.__name__
            if task_name in self._types:
                raise ConfigError(f"task type '{task_name}' is registered twice")
            if not inspect.iscoroutinefunction(handler):
                raise ConfigError(f"task type '{task_name}': the handler must be an async function")
            if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
                raise ConfigError(f"task type '{task_name}': max_attempts must be 1..{MAX_ATTEMPTS_LIMIT}")
            if timeout <= 0 or (cache_ttl is not None and cache_ttl <= 0):
                raise ConfigError(f"task type '{task_name}': timeout and cache_ttl must be positive")
            if not 0 < backoff <= backoff_max <= MAX_DELAY_SECONDS:
                raise ConfigError(
                    f"task type '{task_name}': 0 < backoff <= backoff_max <= {MAX_DELAY_SECONDS} seconds"
                )
            self._types[task_name] = TaskType(
                task_name,
                handler,
                _payload_type(task_name, handler),
                timeout,
                max_attempts,
                cache_ttl,
                backoff,
                backoff_max,
                rate_limit,
                _rate(task_name, rate_limit),
                _concurrency(task_name, concurrency),
            )
            return handler

        return register

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def __iter__(self) -> Iterator[TaskType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def __contains__(self, name: object) -> bool:
        return name in self._types


def _rate(name: str, rate_limit: str | None) -> float | None:
    if rate_limit is None:
        return None
    try:
        return parse_rate(str(rate_limit))  # str(): a number passed by mistake is named, not a crash
    except ValueError as exc:
        raise ConfigError(f"task type '{name}': {exc}") from exc


def _concurrency(name: str, concurrency: int | None) -> int | None:
    if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
        raise ConfigError(
            f"task type '{name}': concurrency must be a whole number from 1, not {concurrency!r}"
        )
    return concurrency


def _payload_type(name: str, handler: Handler) -> type[msgspec.Struct]:
    params = list(inspect.signature(handler).parameters)
    hints = typing.get_type_hints(handler)
    annotation = hints.get(params[0]) if len(params) == 1 else None
    if not (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)):
        raise ConfigError(
            f"task type '{name}': the handler takes exactly one parameter annotated with a msgspec.Struct"
        )
    return annotation
