"""Trigger listeners: each turns messages or ticks from a real server into invocations.

A listener is built once per function by :func:`build_listener` from the trigger binding's
``type``; the host starts them all and stops them on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Protocol

from local.host.indexing import IndexedFunction
from local.host.invoker import Invoker
from local.host.settings import HostConfig


@dataclass(frozen=True)
class ListenerContext:
    """What every listener gets from the host."""

    invoker: Invoker
    host_config: HostConfig
    environ: MutableMapping[str, str]
    #: Identifies this host among several (timer leases, schedule status paths).
    host_id: str


class Listener(Protocol):
    """Lifecycle of one trigger's listener."""

    function: IndexedFunction

    async def start(self) -> None:
        """Connect and begin taking work; raise with a clear message if the server cannot be used."""

    async def stop(self) -> None:
        """Stop taking work, finish or hand back in-flight messages, close connections.

        Nothing may be acknowledged that was not processed.
        """

    def describe(self) -> str:
        """One line for the function list, e.g. ``rabbitMQTrigger (queue tasks)``."""
        ...


ListenerFactory = Callable[[IndexedFunction, ListenerContext], Listener]


def build_listener(fn: IndexedFunction, ctx: ListenerContext) -> Listener:
    """The listener for ``fn``'s trigger type; unknown types are an indexing error."""
    from local.host.errors import IndexingError

    factories = _factories()
    factory = factories.get(fn.trigger.type)
    if factory is None:
        supported = ", ".join(sorted([*factories, "httpTrigger"]))
        raise IndexingError(
            fn.name, f"trigger type '{fn.trigger.type}' is not supported (supported: {supported})"
        )
    return factory(fn, ctx)


def _factories() -> dict[str, ListenerFactory]:
    # Imported lazily so that an app without, say, Service Bus never imports its SDK.
    def rabbitmq(fn: IndexedFunction, ctx: ListenerContext) -> Listener:
        from local.host.triggers.rabbitmq import RabbitMQListener

        return RabbitMQListener(fn, ctx)

    def servicebus(fn: IndexedFunction, ctx: ListenerContext) -> Listener:
        from local.host.triggers.servicebus import ServiceBusListener

        return ServiceBusListener(fn, ctx)

    def timer(fn: IndexedFunction, ctx: ListenerContext) -> Listener:
        from local.host.triggers.timer import TimerListener

        return TimerListener(fn, ctx)

    return {"rabbitMQTrigger": rabbitmq, "serviceBusTrigger": servicebus, "timerTrigger": timer}
