"""The composition root: one :class:`Pipeline`, built once per process from settings and a registry.

It owns every client (store, broker) and the parts built on them (accepter, processor), and hands
each part what it uses; no other module holds a client. ``function_app.py`` states what the app is
made of (:func:`configure`); the blueprints reach the pipeline through :func:`pipeline`, which builds
it on first use, after the worker's import-time indexing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from shared.brokers.base import Backlog, Broker
from shared.errors import BrokerError, StoreError
from shared.pipeline.accept import Accepter
from shared.pipeline.hooks import Hooks
from shared.pipeline.patience import Outage
from shared.pipeline.process import Processor
from shared.pipeline.redrive import Redriver
from shared.pipeline.registry import Registry
from shared.pipeline.settings import Settings
from shared.store.store import Store

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The store, the broker and what is built on them, sharing one set of hooks."""

    settings: Settings
    registry: Registry
    store: Store
    broker: Broker
    hooks: Hooks = field(default_factory=Hooks)

    def __post_init__(self) -> None:
        self.accepter = Accepter(
            self.broker,
            self.store,
            self.registry,
            self.hooks,
            max_backlog=self.settings.max_backlog,
            rate_limit=self.settings.rate_limit,
            rate_burst=self.settings.rate_burst,
        )
        self.processor = Processor(self.store, self.broker, self.registry, self.hooks)
        self.redriver = Redriver(self.store, self.broker, self.hooks)
        self._backlog_outage = Outage("The backlog snapshot")

    @classmethod
    def build(cls, settings: Settings, registry: Registry, hooks: Hooks | None = None) -> Pipeline:
        """Make the clients (they connect on first use)."""
        store = Store(settings.valkey_url, settings.valkey_password, status_ttl=settings.status_ttl_seconds)
        broker = settings.broker.build_broker(settings.tasks_queue)
        return cls(settings, registry, store, broker, hooks or Hooks())

    async def readiness(self, limit_seconds: float = 2.0) -> dict[str, bool]:
        """Whether Valkey and the broker answer, each within ``limit_seconds``."""

        async def check(name: str, probe: Awaitable[object]) -> bool:
            try:
                await asyncio.wait_for(probe, limit_seconds)
            except Exception as exc:  # any failure means "not ready"; the reason goes to the log
                log.warning("Readiness check of %s failed: %s", name, exc)
                return False
            return True

        valkey_ok, broker_ok = await asyncio.gather(
            check("valkey", self.store.ping()), check("broker", self.broker.backlog())
        )
        return {"valkey": valkey_ok, "broker": broker_ok}

    async def snapshot_backlog(self) -> Backlog | None:
        """Read the backlog from the broker, keep it in Valkey (stats), reconcile the live backlog that
        admission counts with it, and report it.

        None while the broker or Valkey is unreachable: the snapshot is skipped (one WARNING when the
        outage starts and one when it ends, not a traceback every time the timer fires).
        """
        try:
            backlog = await self.broker.backlog()
            await self.store.save_backlog(backlog)
            before, after = await self.store.reconcile_backlog(backlog.total)
        except (BrokerError, StoreError) as exc:
            self._backlog_outage.failed(exc)
            return None
        self._backlog_outage.recovered()
        if before != after:
            log.info("Live backlog reconciled from %d to %d unfinished tasks", before, after)
        self.hooks.backlog(backlog)
        return backlog

    async def close(self) -> None:
        """Close the broker and the store."""
        try:
            await self.broker.close()
        finally:
            await self.store.close()


@dataclass
class _Root:
    registry: Registry | None = None
    hooks: Hooks | None = None
    built: Pipeline | None = None


_root = _Root()


def configure(registry: Registry, hooks: Hooks) -> None:
    """What the app is made of: its task types and its hooks. ``function_app.py`` calls it once."""
    _root.registry, _root.hooks = registry, hooks


def hooks() -> Hooks:
    """The configured hooks, without building the pipeline (the health route touches nothing else)."""
    return _root.hooks or _SILENT


_SILENT = Hooks()


def pipeline() -> Pipeline:
    """The process's pipeline, built from the environment on first use."""
    if _root.built is None:
        if _root.registry is None:
            raise RuntimeError("the pipeline is not configured: function_app.py calls configure() first")
        _root.built = Pipeline.build(Settings.from_environ(), _root.registry, _root.hooks)
    return _root.built


def install(built: Pipeline) -> None:
    """Use ``built`` as the process's pipeline (tests, and hosts that build their own)."""
    _root.built = built


async def reset() -> None:
    """Close and forget the built pipeline, so the next use builds it from the current settings."""
    built, _root.built = _root.built, None
    if built is not None:
        await built.close()
