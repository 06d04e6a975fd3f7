"""Clients built once per process and reused by every invocation; nothing connects per request.

Each accessor builds its client on first use from :class:`~shared.pipeline.settings.Settings`;
:func:`reset` closes them (tests, and a host shutting down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from shared import tasks as _builtin_tasks  # noqa: F401  (registers the built-in task types)
from shared.brokers import Broker, create_broker
from shared.pipeline.process import Accepter, Processor
from shared.pipeline.registry import registry
from shared.pipeline.settings import Settings
from shared.store.store import Store

log = logging.getLogger(__name__)

_settings: Settings | None = None
_broker: Broker | None = None
_store: Store | None = None
_accepter: Accepter | None = None
_processor: Processor | None = None


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_environ()
    return _settings


def broker() -> Broker:
    global _broker
    if _broker is None:
        _broker = create_broker(settings())
    return _broker


def store() -> Store:
    global _store
    if _store is None:
        config = settings()
        _store = Store(config.valkey_url, config.valkey_password, status_ttl=config.status_ttl_seconds)
    return _store


def accepter() -> Accepter:
    global _accepter
    if _accepter is None:
        _accepter = Accepter(broker(), store(), registry, max_backlog=settings().max_backlog)
    return _accepter


def processor() -> Processor:
    global _processor
    if _processor is None:
        config = settings()
        system = "rabbitmq" if config.profile == "local" else "servicebus"
        _processor = Processor(store(), registry, system=system, queue=config.tasks_queue)
    return _processor


async def reset() -> None:
    """Close and forget every client, so the next use builds them from the current settings."""
    global _settings, _broker, _store, _accepter, _processor
    broker_, store_ = _broker, _store
    _settings = _broker = _store = _accepter = _processor = None
    if broker_ is not None:
        await broker_.close()
    if store_ is not None:
        await store_.close()


async def readiness(limit_seconds: float = 2.0) -> dict[str, bool]:
    """Whether Valkey and the broker answer, each within ``limit_seconds``."""

    async def check(probe: Awaitable[object]) -> bool:
        try:
            await asyncio.wait_for(probe, limit_seconds)
        except Exception as exc:  # any failure means "not ready"; the reason goes to the log
            log.warning("Readiness check failed: %s", exc)
            return False
        return True

    valkey_ok, broker_ok = await asyncio.gather(check(store().ping()), check(broker().backlog()))
    return {"valkey": valkey_ok, "broker": broker_ok}
