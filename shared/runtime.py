"""Clients built once per process and reused by every invocation; nothing connects per request.

Each accessor builds its client on first use from :class:`~shared.config.Settings`;
:func:`reset` closes them (tests, and a host shutting down).
"""

from __future__ import annotations

from shared.brokers import Broker, create_broker
from shared.config import Settings

_settings: Settings | None = None
_broker: Broker | None = None


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


async def reset() -> None:
    """Close and forget every client, so the next use builds them from the current settings."""
    global _settings, _broker
    broker_, _broker, _settings = _broker, None, None
    if broker_ is not None:
        await broker_.close()
