"""What a ``serviceBusTrigger`` listener needs to know: its binding, ``host.json`` and connection.

Binding values and ``extensions.serviceBus`` are read as the Service Bus extension (v5) reads them,
with its defaults; the older v4 form (``messageHandlerOptions``, ``batchOptions``) is accepted as a
fallback. Connections resolve like the extension's client factory: a connection string in the
setting itself, else an identity-based section ``<name>__fullyQualifiedNamespace``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.host.errors import HostError, IndexingError
from local.host.indexing import IndexedFunction
from local.host.settings import parse_flag, parse_timespan

#: The extension's defaults (ServiceBusOptions).
DEFAULT_PREFETCH_COUNT = 0
DEFAULT_MAX_MESSAGE_BATCH_SIZE = 1000
DEFAULT_MAX_AUTO_LOCK_RENEWAL = 300.0
#: The connection name the extension uses when a binding names none.
DEFAULT_CONNECTION = "ServiceBus"


def default_max_concurrent_calls() -> int:
    """16 per processor, as the extension computes it."""
    return 16 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class RetryOptions:
    """``clientRetryOptions``, in the Python SDK's terms; defaults are the .NET client's."""

    mode: str = "exponential"
    max_retries: int = 3
    delay: float = 0.8
    max_delay: float = 60.0
    try_timeout: float = 60.0


@dataclass(frozen=True)
class ServiceBusTriggerOptions:
    """One trigger's entity, settlement and concurrency settings."""

    function_name: str
    connection_name: str
    queue_name: str | None
    topic_name: str | None
    subscription_name: str | None
    many: bool
    auto_complete: bool
    prefetch_count: int = DEFAULT_PREFETCH_COUNT
    max_concurrent_calls: int = field(default_factory=default_max_concurrent_calls)
    max_message_batch_size: int = DEFAULT_MAX_MESSAGE_BATCH_SIZE
    max_auto_lock_renewal: float = DEFAULT_MAX_AUTO_LOCK_RENEWAL
    websockets: bool = False
    retry: RetryOptions = RetryOptions()

    @property
    def entity(self) -> str:
        """The entity for log lines: ``queue tasks`` or ``topic t, subscription s``."""
        if self.queue_name is not None:
            return f"queue {self.queue_name}"
        return f"topic {self.topic_name}, subscription {self.subscription_name}"

    @classmethod
    def from_function(cls, fn: IndexedFunction, extension: Mapping[str, Any]) -> ServiceBusTriggerOptions:
        """Read ``fn``'s trigger binding and ``extensions.serviceBus``; a bad value is an error."""
        binding = _Lookup(fn.trigger.values, f"function '{fn.name}'")
        if parse_flag(binding.get("isSessionsEnabled"), False, "isSessionsEnabled"):
            raise IndexingError(
                fn.name,
                "isSessionsEnabled=true: session-enabled entities are not supported by the local host",
            )
        queue, topic, subscription = (
            binding.get("queueName"),
            binding.get("topicName"),
            binding.get("subscriptionName"),
        )
        if not queue and not (topic and subscription):
            raise IndexingError(
                fn.name, "a serviceBusTrigger needs queueName, or topicName and subscriptionName"
            )
        cardinality = str(binding.get("cardinality") or "one").lower()
        if cardinality not in ("one", "many"):
            raise IndexingError(fn.name, f"cardinality '{cardinality}' is not 'one' or 'many'")
        host = _Lookup(extension, "host.json extensions.serviceBus")
        legacy_single = _Lookup(
            host.get("messageHandlerOptions") or {}, host.where + ".messageHandlerOptions"
        )
        legacy_batch = _Lookup(host.get("batchOptions") or {}, host.where + ".batchOptions")
        many = cardinality == "many"
        # The binding's own setting wins over host.json, as in the extension's binding provider.
        auto_complete = parse_flag(
            _first(
                binding.get("autoCompleteMessages"),
                host.get("autoCompleteMessages"),
                (legacy_batch if many else legacy_single).get("autoComplete"),
            ),
            True,
            "autoCompleteMessages",
        )
        renewal = _first(host.get("maxAutoLockRenewalDuration"), legacy_single.get("maxAutoRenewDuration"))
        return cls(
            function_name=fn.name,
            connection_name=str(binding.get("connection") or DEFAULT_CONNECTION),
            queue_name=str(queue) if queue else None,
            topic_name=None if queue else str(topic),
            subscription_name=None if queue else str(subscription),
            many=many,
            auto_complete=auto_complete,
            prefetch_count=host.integer("prefetchCount", DEFAULT_PREFETCH_COUNT, minimum=0),
            max_concurrent_calls=_first_int(
                host, legacy_single, "maxConcurrentCalls", default_max_concurrent_calls()
            ),
            max_message_batch_size=_first_int(
                host,
                legacy_batch,
                "maxMessageBatchSize",
                DEFAULT_MAX_MESSAGE_BATCH_SIZE,
                legacy_key="maxMessageCount",
            ),
            max_auto_lock_renewal=_timespan(
                renewal, DEFAULT_MAX_AUTO_LOCK_RENEWAL, "maxAutoLockRenewalDuration"
            ),
            websockets=str(host.get("transportType") or "").lower() == "amqpwebsockets",
            retry=_retry(_Lookup(host.get("clientRetryOptions") or {}, host.where + ".clientRetryOptions")),
        )


class _Lookup:
    """Case-insensitive reads of a JSON object, as .NET configuration binds them."""

    def __init__(self, values: Mapping[str, Any], where: str) -> None:
        self._values = {str(k).lower(): v for k, v in values.items()} if isinstance(values, Mapping) else {}
        self.where = where

    def get(self, key: str) -> Any:
        return self._values.get(key.lower())

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        raw = self.get(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = minimum - 1
        if value < minimum or isinstance(raw, bool):
            raise HostError(f"{self.where}.{key}={raw!r}: expected a whole number >= {minimum}")
        return value


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _first_int(host: _Lookup, legacy: _Lookup, key: str, default: int, *, legacy_key: str = "") -> int:
    """``key`` from the v5 form, else from the v4 section it used to live in, else ``default``."""
    if host.get(key) is not None:
        return host.integer(key, default, minimum=1)
    return legacy.integer(legacy_key or key, default, minimum=1)


def _timespan(raw: Any, default: float, name: str) -> float:
    if raw is None:
        return default
    try:
        return parse_timespan(str(raw))
    except HostError as exc:
        raise HostError(f"host.json extensions.serviceBus.{name}: {exc}") from exc


def _retry(section: _Lookup) -> RetryOptions:
    mode = str(section.get("mode") or "exponential").lower()
    if mode not in ("exponential", "fixed"):
        raise HostError(f"{section.where}.mode={mode!r}: expected Exponential or Fixed")
    return RetryOptions(
        mode=mode,
        max_retries=section.integer("maxRetries", RetryOptions.max_retries, minimum=0),
        delay=_timespan(section.get("delay"), RetryOptions.delay, "clientRetryOptions.delay"),
        max_delay=_timespan(section.get("maxDelay"), RetryOptions.max_delay, "clientRetryOptions.maxDelay"),
        try_timeout=_timespan(
            section.get("tryTimeout"), RetryOptions.try_timeout, "clientRetryOptions.tryTimeout"
        ),
    )


#: host.json settings of the extension that the local host reads but does not act on.
_NOT_HONOURED = ("minMessageBatchSize", "maxBatchWaitTime", "sessionIdleTimeout", "maxConcurrentSessions")


def ignored_settings(extension: Mapping[str, Any]) -> list[str]:
    """The ``extensions.serviceBus`` keys that are set but have no effect here (warned about once)."""
    host = _Lookup(extension, "")
    ignored = [key for key in _NOT_HONOURED if host.get(key) is not None]
    # A minimum batch of 1 is the extension's default behaviour, which is what the host does anyway.
    if "minMessageBatchSize" in ignored and str(host.get("minMessageBatchSize")) == "1":
        ignored.remove("minMessageBatchSize")
    return ignored
