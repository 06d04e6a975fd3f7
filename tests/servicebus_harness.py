"""Build ``serviceBusTrigger`` functions and listeners over ``tests.servicebus_fake`` for the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.functions as func

from local.host.indexing import IndexedFunction, index
from local.host.invoker import Invoker
from local.host.settings import HostConfig
from local.host.triggers import ListenerContext
from local.host.triggers.servicebus import ServiceBusListener
from tests.servicebus_fake import FakeServiceBus

ENVIRON = {
    "ServiceBusConnection": "Endpoint=sb://tasklane-test.servicebus.windows.net/;"
    "SharedAccessKeyName=listen;SharedAccessKey=bm90LWEtcmVhbC1rZXk=",
    "TASKS_QUEUE": "tasks",
}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

Register = Callable[[func.FunctionApp], None]


def indexed(register: Register, environ: dict[str, str] | None = None) -> IndexedFunction:
    """Index the one function ``register`` adds to a fresh app, as the host indexes an app."""
    app = func.FunctionApp()
    register(app)
    functions, errors = index(list(app.get_functions()), Path("."), environ or ENVIRON)
    assert errors == []
    (fn,) = functions
    return fn


def context(invoker: Invoker, service_bus: dict[str, Any] | None = None) -> ListenerContext:
    document = {"version": "2.0", "extensions": {"serviceBus": service_bus or {}}}
    return ListenerContext(invoker, HostConfig(document), dict(ENVIRON), "test-host")


def listener(
    fn: IndexedFunction,
    bus: FakeServiceBus,
    invoker: Invoker,
    service_bus: dict[str, Any] | None = None,
    *,
    stop_grace: float = 2.0,
) -> ServiceBusListener:
    return ServiceBusListener(
        fn,
        context(invoker, service_bus),
        client_factory=bus.factory,
        receive_wait=0.02,
        stop_grace=stop_grace,
        backoff=lambda attempt: 0.0,
    )


def queue_function(
    handler: Callable[..., Any], *, cardinality: func.Cardinality | None = None, **binding: Any
) -> Register:
    def register(app: func.FunctionApp) -> None:
        app.service_bus_queue_trigger(
            arg_name="msg",
            queue_name="%TASKS_QUEUE%",
            connection="ServiceBusConnection",
            cardinality=cardinality,
            **binding,
        )(handler)

    return register
