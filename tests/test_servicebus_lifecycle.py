"""``serviceBusTrigger`` lifecycle: starting, stopping with work in flight, errors, and how it is built.

The listener runs against ``tests.servicebus_fake`` (see ``test_servicebus_trigger``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusReceiveMode
from azure.servicebus.aio import AutoLockRenewer
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
)

from local.host.errors import HostError, IndexingError
from local.host.invoker import Invoker
from local.host.triggers import build_listener
from local.host.triggers.servicebus import ServiceBusListener
from tests.servicebus_fake import FakeServiceBus
from tests.servicebus_harness import context, indexed, listener, queue_function
from tests.waiting import until


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    pool = Invoker()
    yield pool
    pool.close()


async def test_stop_waits_for_an_invocation_that_finishes_within_the_grace_period(invoker: Invoker) -> None:
    # Given an invocation in flight that finishes shortly after stop begins
    started, release = asyncio.Event(), asyncio.Event()

    async def process(msg: func.ServiceBusMessage) -> None:
        started.set()
        await release.wait()

    bus = FakeServiceBus()
    message_id = bus.send("slow task")
    sb = listener(indexed(queue_function(process)), bus, invoker)
    await sb.start()
    await started.wait()

    # When the host stops and the function then finishes
    stopping = asyncio.create_task(sb.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopping

    # Then its message was completed before the connection closed
    assert bus.completed == [message_id]
    assert bus.closed == ["receiver", "client"]


async def test_stop_abandons_an_invocation_that_outlives_the_grace_period(invoker: Invoker) -> None:
    # Given an invocation that never finishes
    started = asyncio.Event()

    async def process(msg: func.ServiceBusMessage) -> None:
        started.set()
        await asyncio.Event().wait()

    bus = FakeServiceBus()
    message_id = bus.send("stuck task")
    sb = listener(indexed(queue_function(process)), bus, invoker, stop_grace=0.1)
    await sb.start()
    await started.wait()

    # When the host stops
    await sb.stop()

    # Then the message was handed back, not completed
    assert bus.completed == []
    assert bus.abandoned == [message_id]


async def test_messages_received_while_stopping_are_abandoned_without_an_invocation(invoker: Invoker) -> None:
    # Given a receive that is still waiting when the host stops
    calls: list[str] = []

    async def process(msg: func.ServiceBusMessage) -> None:
        calls.append(msg.message_id)

    bus = FakeServiceBus()
    bus.gate.clear()
    message_id = bus.send("late arrival")
    sb = listener(indexed(queue_function(process)), bus, invoker)
    await sb.start()
    await until(lambda: bool(bus.receive_requests))

    # When stop begins and only then the receive returns a message
    stopping = asyncio.create_task(sb.stop())
    await asyncio.sleep(0)
    bus.gate.set()
    await stopping

    # Then that message was abandoned, never processed nor completed
    assert calls == []
    assert bus.completed == []
    assert bus.abandoned == [message_id]


@pytest.mark.parametrize(
    ("cardinality", "renews"), [(func.Cardinality.ONE, True), (func.Cardinality.MANY, False)]
)
async def test_receiver_settings_follow_host_json(
    invoker: Invoker, cardinality: func.Cardinality, renews: bool
) -> None:
    # Given host.json prefetch and lock renewal settings
    async def process(msg: Any) -> None:
        return None

    bus = FakeServiceBus()
    host = {"prefetchCount": 7, "maxAutoLockRenewalDuration": "00:02:00"}
    sb = listener(indexed(queue_function(process, cardinality=cardinality)), bus, invoker, host)

    # When the listener opens its receiver
    await sb.start()
    await sb.stop()

    # Then it peek-locks with that prefetch, renewing locks only for single messages (as the extension)
    settings = bus.receiver_settings
    assert settings["receive_mode"] == ServiceBusReceiveMode.PEEK_LOCK
    assert settings["prefetch_count"] == 7
    assert isinstance(settings.get("auto_lock_renewer"), AutoLockRenewer) is renews


async def test_a_dropped_connection_is_logged_and_receiving_resumes(
    invoker: Invoker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a receive that fails once with a connection error
    async def process(msg: func.ServiceBusMessage) -> None:
        return None

    bus = FakeServiceBus(receive_errors=[ServiceBusConnectionError(message="connection reset by peer")])
    message_id = bus.send("task")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When the listener runs
    with caplog.at_level(logging.ERROR, logger="local.host.triggers.servicebus"):
        await sb.start()
        await until(lambda: bool(bus.completed))
        await sb.stop()

    # Then the failure named the entity and setting, and the message was still processed
    assert bus.completed == [message_id]
    assert (
        "queue tasks in tasklane-test.servicebus.windows.net (connection 'ServiceBusConnection')"
        in caplog.text
    )
    assert "connection reset by peer" in caplog.text


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (MessagingEntityNotFoundError(message="not found"), "queue tasks does not exist in tasklane-test"),
        (ServiceBusAuthorizationError(message="unauthorized"), "Azure Service Bus Data Receiver"),
    ],
)
async def test_start_refuses_a_missing_queue_or_role(
    invoker: Invoker, error: Exception, expected: str
) -> None:
    # Given a namespace that answers the receiver's attach with an error that retrying cannot fix
    async def process(msg: func.ServiceBusMessage) -> None:
        return None

    bus = FakeServiceBus(open_error=error)
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When the host starts the listener, Then it fails with what to fix, and nothing stays open
    with pytest.raises(HostError, match=expected):
        await sb.start()
    assert bus.closed == ["receiver", "client"]


def test_the_host_builds_this_listener_for_a_service_bus_trigger(invoker: Invoker) -> None:
    # Given a topic subscription function indexed by the host
    def register(app: func.FunctionApp) -> None:
        @app.service_bus_topic_trigger(
            arg_name="msg", topic_name="events", subscription_name="audit", connection="ServiceBusConnection"
        )
        def audit(msg: func.ServiceBusMessage) -> None:
            return None

    # When the host's factory builds its listener (the real client, not connected yet)
    sb = build_listener(indexed(register), context(invoker))

    # Then it is this listener, describing its entity for the function list
    assert isinstance(sb, ServiceBusListener)
    assert sb.describe() == "serviceBusTrigger (topic events, subscription audit)"


@pytest.mark.parametrize(
    ("binding", "error"),
    [
        ({"is_sessions_enabled": True}, "session-enabled entities are not supported"),
        ({"connection": "MissingConnection"}, "'MissingConnection' does not exist"),
    ],
)
def test_unusable_bindings_are_reported_when_the_host_loads(
    invoker: Invoker, binding: dict[str, Any], error: str
) -> None:
    # Given a binding the local host cannot serve
    def register(app: func.FunctionApp) -> None:
        @app.service_bus_queue_trigger(
            arg_name="msg", queue_name="tasks", **{"connection": "ServiceBusConnection", **binding}
        )
        def process(msg: func.ServiceBusMessage) -> None:
            return None

    # When its listener is built, Then the error says why
    with pytest.raises(HostError, match=error):
        build_listener(indexed(register), context(invoker))


@pytest.mark.parametrize(
    ("annotation", "cardinality", "error"),
    [
        (dict, func.Cardinality.ONE, "does not match its Python annotation 'dict'"),
        # The worker's typing_inspect does not know PEP 585 generics (azure-functions-python-worker#1034).
        (list[func.ServiceBusMessage], func.Cardinality.MANY, "write typing.List"),
    ],
)
def test_an_annotation_the_worker_rejects_is_an_indexing_error(
    invoker: Invoker, annotation: Any, cardinality: func.Cardinality, error: str
) -> None:
    def process(msg: Any) -> None:
        return None

    process.__annotations__["msg"] = annotation
    with pytest.raises(IndexingError, match=error):
        listener(indexed(queue_function(process, cardinality=cardinality)), FakeServiceBus(), invoker)


async def test_a_namespace_not_reachable_at_start_is_retried_in_the_background(
    invoker: Invoker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a namespace that cannot be reached when the host starts
    async def process(msg: func.ServiceBusMessage) -> None:
        return None

    bus = FakeServiceBus(open_error=ServiceBusConnectionError(message="name resolution failed"))
    message_id = bus.send("task")
    sb = listener(indexed(queue_function(process)), bus, invoker)

    # When the host starts the listener
    with caplog.at_level(logging.WARNING, logger="local.host.triggers.servicebus"):
        await sb.start()
        await until(lambda: bool(bus.completed))
        await sb.stop()

    # Then start only warned, and receiving went ahead once the namespace answered
    assert "name resolution failed; retrying in the background" in caplog.text
    assert bus.completed == [message_id]


async def test_a_host_failure_around_the_invocation_still_abandons(invoker: Invoker) -> None:
    # Given an invoker that fails before the function runs (a host defect, not the function's)
    class BrokenInvoker(Invoker):
        async def invoke(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("host defect")

    async def process(msg: func.ServiceBusMessage) -> None:
        return None

    bus = FakeServiceBus(max_delivery_count=1)
    message_id = bus.send("task")
    broken = BrokenInvoker()
    sb = listener(indexed(queue_function(process)), bus, broken)

    # When the message is received
    await sb.start()
    await until(lambda: bool(bus.dead_letters))
    await sb.stop()
    broken.close()

    # Then it was handed back rather than left locked
    assert bus.abandoned == [message_id]
    assert bus.completed == []
