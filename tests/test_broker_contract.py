"""The broker contract: one suite of behaviours, run against every broker that can run here.

* ``stub``: the in-memory broker.
* ``rabbitmq``: the real server (``rabbitmq_url``), on a queue of its own per test, deleted after.
* ``servicebus``: a real namespace, only when ``SERVICEBUS_CONNECTION_STRING`` (or
  ``ServiceBusConnection__fullyQualifiedNamespace``, with an identity) and ``SERVICEBUS_QUEUE`` are
  set; skipped otherwise, even under CI, since no namespace is reachable from our machines. A test
  cannot create a queue there, so the queue is drained before each test; runtime counts lag the
  sends by a moment, so backlog checks poll until they hold or time out.
* ``servicebus-double``: the same Service Bus code against the wire-level doubles in
  ``tests/doubles`` (an AMQP peer and the administration endpoint's Atom XML), so that code runs
  here too. It says nothing about the service itself; ``servicebus`` does.

Messages are read back as a consumer would read them: the stub's list, aio-pika for RabbitMQ, the
SDK's receiver (receive-and-delete) for Service Bus; dead letters likewise, from the stub's
``dead_letters`` and from the queue ``<queue>.dead-letter`` (RabbitMQ and Service Bus alike).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import pytest
from azure.core.pipeline.transport import HttpRequest

from shared.brokers.base import Backlog, Broker, OutgoingMessage
from shared.brokers.lanes import NORMAL, PRIORITIES, Lanes, lane_queue
from shared.brokers.rabbitmq import RabbitMQBroker
from shared.brokers.servicebus import ServiceBusBroker
from shared.brokers.stub import StubBroker
from shared.errors import BrokerError
from shared.pipeline.process import DEAD_LETTER_DESCRIPTION, DEAD_LETTER_REASON
from shared.pipeline.settings import RabbitMQConnection
from shared.platform.rabbitmq_topology import QueueTopology, delete_queue_topology
from shared.platform.servicebus_connection import ServiceBusConnection, resolve_connection
from shared.secrets import Secret
from tests.doubles.servicebus_amqp import FakeServiceBus
from tests.doubles.servicebus_http import AtomTransport, Reply, empty_feed, path_of, queue_entry

pytestmark = pytest.mark.contract

SERVICEBUS_SETTINGS = (
    "SERVICEBUS_CONNECTION_STRING (or ServiceBusConnection__fullyQualifiedNamespace) and SERVICEBUS_QUEUE"
)
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Diagnostic-Id": "diag-1"}


@dataclass(frozen=True)
class Received:
    """A message as its consumer reads it back."""

    id: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Harness:
    """A broker under test, with what the suite needs around it."""

    broker: Broker
    #: The same kind of broker, pointed at a server that does not answer.
    unreachable: Callable[[], Broker]
    #: Consume everything on the queue.
    read_back: Callable[[], Awaitable[list[Received]]]
    #: Consume everything in the queue's dead-letter queue.
    read_dead_letters: Callable[[], Awaitable[list[Received]]]
    #: Whether the queue (and so its dead-letter count) is new for this test.
    fresh_queue: bool
    #: How long the broker's counts may take to reflect a send.
    settle_seconds: float
    #: Whether the server holds a scheduled message until its time (the Service Bus double does not).
    holds_scheduled: bool = True


@pytest.fixture(params=["stub", "rabbitmq", "rabbitmq-lanes", "servicebus", "servicebus-double"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "stub":
        stub = StubBroker(f"contract-{uuid.uuid4().hex}")
        yield Harness(
            stub,
            _failing_stub,
            lambda: _read_stub(stub),
            lambda: _read_stub_dead_letters(stub),
            fresh_queue=True,
            settle_seconds=0,
        )
    elif request.param in ("rabbitmq", "rabbitmq-lanes"):
        url: str = request.getfixturevalue("rabbitmq_url")
        async for harness in _rabbitmq(url, lanes=request.param == "rabbitmq-lanes"):
            yield harness
    elif request.param == "servicebus":
        found = _servicebus_connection()
        if found is None:
            pytest.skip(f"servicebus: set {SERVICEBUS_SETTINGS} to run the contract against a real namespace")
        async for harness in _servicebus(*found, real=True):
            yield harness
    else:
        async for harness in _servicebus_double():
            yield harness


async def backlog_once(harness: Harness, holds: Callable[[Backlog], bool]) -> Backlog:
    """The first backlog for which ``holds`` is true, or the last one read when time runs out."""
    deadline = time.monotonic() + harness.settle_seconds
    while True:
        backlog = await harness.broker.backlog()
        if holds(backlog) or time.monotonic() >= deadline:
            return backlog
        await asyncio.sleep(0.25)


def message(n: int, headers: dict[str, str] | None = None) -> OutgoingMessage:
    return OutgoingMessage(f"contract-{n}-{uuid.uuid4().hex[:8]}", f'{{"n": {n}}}'.encode(), headers or {})


async def dead_letters(harness: Harness, *names: str) -> list[OutgoingMessage]:
    """Dead-letter one message per name, and wait until the broker counts them all."""
    reason = {DEAD_LETTER_REASON: "MaxAttemptsExceeded", DEAD_LETTER_DESCRIPTION: "failed 5 times"}
    letters = [
        OutgoingMessage(f"contract-{name}-{uuid.uuid4().hex[:8]}", f'{{"letter": "{name}"}}'.encode(), reason)
        for name in names
    ]
    await harness.broker.dead_letter(letters)
    # A drain offers what the dead-letter queue holds as it starts, so it must count them all first.
    await backlog_once(harness, lambda b: b.dead_lettered >= len(letters))
    return letters


class DecisionFailed(Exception):
    """Raised by a drain's decision, to see it reach the caller."""


# --- the behaviours --------------------------------------------------------------------------------


async def test_a_fresh_queue_has_no_backlog(harness: Harness) -> None:
    backlog = await harness.broker.backlog()

    assert backlog.active == 0
    assert (backlog.scheduled or 0) == 0
    if harness.fresh_queue:
        assert backlog.dead_lettered == 0


async def test_a_sent_message_counts_in_the_backlog(harness: Harness) -> None:

    # When one message is sent
    await harness.broker.send_batch([message(1)])

    # Then the queue's backlog counts it as active
    backlog = await backlog_once(harness, lambda b: b.active == 1)
    assert backlog.active == 1
    assert backlog.total == 1


async def test_a_batch_of_250_all_count_in_the_backlog(harness: Harness) -> None:

    # When 250 messages are sent as one batch
    await harness.broker.send_batch([message(n) for n in range(250)])

    # Then the backlog counts all of them
    backlog = await backlog_once(harness, lambda b: b.active == 250)
    assert backlog.active == 250


async def test_a_batch_of_250_all_arrive_with_their_bodies(harness: Harness) -> None:
    # Given 250 messages, each with its own body
    sent = [message(n) for n in range(250)]

    # When they are sent as one batch
    await harness.broker.send_batch(sent)

    # Then a consumer reads back every id with its body, and nothing else
    received = await harness.read_back()
    assert len(received) == 250
    assert {r.id: r.body for r in received} == {m.id: m.body for m in sent}


async def test_a_scheduled_message_arrives_at_its_time_not_before(harness: Harness) -> None:
    if not harness.holds_scheduled:
        pytest.skip(
            "the Service Bus double does not hold scheduled messages; test_servicebus_broker checks the "
            "scheduled enqueue time the SDK sends"
        )
    # Given a message scheduled two seconds ahead, and one for now
    due = time.time() + 2
    await harness.broker.send_batch(
        [
            OutgoingMessage("later", b"later", scheduled_at=datetime.fromtimestamp(due, UTC)),
            OutgoingMessage("now", b"now"),
        ]
    )
    # When the queue is read at once, Then only the one for now is there
    assert [r.id for r in await harness.read_back()] == ["now"]
    # And once its time has come, the scheduled one is there too
    await asyncio.sleep(max(0.0, due - time.time()) + 0.5 + harness.settle_seconds)
    assert [r.id for r in await harness.read_back()] == ["later"]


async def test_headers_travel_with_the_message(harness: Harness) -> None:
    # When a message carrying trace headers is sent (the broker passes them on; it adds none)
    sent = message(1, TRACE)
    await harness.broker.send_batch([sent])

    # Then the consumer reads the same headers back
    (received,) = await harness.read_back()
    assert received.id == sent.id
    assert {k: received.headers.get(k) for k in TRACE} == TRACE


async def test_close_then_send_again_reconnects(harness: Harness) -> None:
    # Given a broker that sent once and was closed
    first, second = message(1), message(2)
    await harness.broker.send_batch([first])
    await harness.broker.close()

    # When it sends again
    await harness.broker.send_batch([second])

    # Then a consumer finds both messages on the queue
    assert sorted(r.id for r in await harness.read_back()) == sorted([first.id, second.id])


async def test_a_dead_letter_lands_in_the_dead_letter_queue_with_its_reason(harness: Harness) -> None:
    # Given a message that carries why it is dead-lettered
    reason = {DEAD_LETTER_REASON: "MaxAttemptsExceeded", DEAD_LETTER_DESCRIPTION: "failed 5 times"}
    dead = message(1, reason)

    # When it is dead-lettered
    await harness.broker.dead_letter([dead])

    # Then the backlog counts it as dead-lettered, not as active work
    backlog = await backlog_once(harness, lambda b: b.dead_lettered >= 1 and b.active == 0)
    assert backlog.active == 0
    if harness.fresh_queue:
        assert backlog.dead_lettered == 1
    else:
        assert backlog.dead_lettered >= 1
    # And a consumer of the dead-letter queue reads it back with its id, body and reason
    (received,) = await harness.read_dead_letters()
    assert (received.id, received.body) == (dead.id, dead.body)
    assert {k: received.headers.get(k) for k in reason} == reason


async def test_a_drain_removes_the_dead_letters_decided_true_and_keeps_the_rest(harness: Harness) -> None:
    # Given three dead letters, a, b and c
    a, b, c = await dead_letters(harness, "a", "b", "c")
    offered: list[str] = []

    async def take_only_b(letter: OutgoingMessage) -> bool:
        offered.append(letter.id)
        return letter.id == b.id

    # When they are drained by a decision that takes only b
    await harness.broker.drain_dead_letters(take_only_b)

    # Then the decision saw each of them once
    assert sorted(offered) == sorted([a.id, b.id, c.id])
    # And b has left the dead-letter queue, while a and c are still there, as they were
    remaining = await harness.read_dead_letters()
    assert sorted((r.id, r.body) for r in remaining) == sorted([(a.id, a.body), (c.id, c.body)])


async def test_a_decision_that_raises_ends_the_drain_and_loses_no_dead_letter(harness: Harness) -> None:
    # Given three dead letters, a, b and c
    letters = await dead_letters(harness, "a", "b", "c")
    offered: list[str] = []

    async def take_then_fail(letter: OutgoingMessage) -> bool:
        offered.append(letter.id)
        if len(offered) == 2:
            raise DecisionFailed(letter.id)
        return True

    # When the decision takes the first letter offered and raises on the second
    with pytest.raises(DecisionFailed):
        await harness.broker.drain_dead_letters(take_then_fail)

    # Then the error reached the caller, and only the letter decided True left the queue: the one
    # being decided and the one never offered are still there
    taken, failed = offered
    remaining = await harness.read_dead_letters()
    assert sorted(r.id for r in remaining) == sorted(m.id for m in letters if m.id != taken)
    assert failed in {r.id for r in remaining}


async def test_a_send_to_an_unreachable_broker_raises_broker_error(harness: Harness) -> None:
    broker = harness.unreachable()
    try:
        with pytest.raises(BrokerError):
            await broker.send_batch([message(1)])
    finally:
        await broker.close()


# --- stub ------------------------------------------------------------------------------------------


def _failing_stub() -> Broker:
    stub = StubBroker("unreachable")
    stub.fail_next = True
    return stub


async def _read_stub(stub: StubBroker) -> list[Received]:
    """What a consumer gets now: the messages that are due (a scheduled one stays until its time)."""
    now = time.time()
    due = [m for m in stub.messages if m.scheduled_at is None or m.scheduled_at.timestamp() <= now]
    for message in due:
        stub.messages.remove(message)
    return [Received(m.id, m.body, dict(m.headers)) for m in due]


async def _read_stub_dead_letters(stub: StubBroker) -> list[Received]:
    taken, stub.dead_letters = stub.dead_letters, []
    return [Received(m.id, m.body, dict(m.headers)) for m in taken]


# --- RabbitMQ --------------------------------------------------------------------------------------


async def _rabbitmq(url: str, *, lanes: bool = False) -> AsyncIterator[Harness]:
    """One queue's broker, or (``lanes``) the app's: a lane per priority, the messages here all normal."""
    queue = f"contract-{uuid.uuid4().hex}"

    def build(at: str) -> Broker:
        return (
            RabbitMQConnection(Secret(at)).build_broker(queue) if lanes else RabbitMQBroker(Secret(at), queue)
        )

    broker = build(url)
    assert isinstance(broker, Lanes) == lanes

    def unreachable() -> Broker:
        return build("amqp://guest:guest@127.0.0.1:1/")  # nothing listens on port 1

    try:
        yield Harness(
            broker,
            unreachable,
            lambda: _read_rabbitmq(url, queue),
            lambda: _read_rabbitmq(url, QueueTopology.for_queue(queue).dead_letter_queue),
            fresh_queue=True,
            settle_seconds=2,
        )
    finally:
        await broker.close()
        for priority in PRIORITIES if lanes else (NORMAL,):
            await delete_queue_topology(url, lane_queue(queue, priority))


async def _read_rabbitmq(url: str, queue: str) -> list[Received]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        received = []
        while (taken := await declared.get(no_ack=True, fail=False)) is not None:
            headers = {key: _text(value) for key, value in (taken.headers or {}).items()}
            received.append(Received(str(taken.message_id), taken.body, headers))
    return received


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- Service Bus -----------------------------------------------------------------------------------


def _servicebus_connection() -> tuple[ServiceBusConnection, str] | None:
    queue = os.environ.get("SERVICEBUS_QUEUE", "").strip()
    # Mixed case because these are the app setting names Azure Functions uses.
    namespace = os.environ.get("ServiceBusConnection__fullyQualifiedNamespace", "").strip()  # noqa: SIM112
    connection_string = os.environ.get("SERVICEBUS_CONNECTION_STRING", "").strip()
    if not queue or not (namespace or connection_string):
        return None
    if connection_string:
        return ServiceBusConnection.from_connection_string(connection_string), queue
    # The identity settings as the app reads them (ServiceBusConnection__credential, __clientId...).
    return resolve_connection(os.environ, "ServiceBusConnection"), queue


async def _servicebus(
    connection: ServiceBusConnection,
    queue: str,
    *,
    real: bool,
    http_transport: AtomTransport | None = None,
) -> AsyncIterator[Harness]:
    # A real queue is shared and may hold messages: start and end empty, and give the counts time.
    wait = 5.0 if real else 0.5

    def unreachable() -> Broker:
        nowhere = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=none;SharedAccessKey=bm9uZQ==;UseDevelopmentEmulator=true"
        return ServiceBusBroker(ServiceBusConnection.from_connection_string(nowhere), queue, retry_total=0)

    broker = ServiceBusBroker(connection, queue, http_transport=http_transport)
    if real:
        await _drain_servicebus(connection, broker, wait)
    try:
        yield Harness(
            broker,
            unreachable,
            lambda: _read_servicebus(connection, queue, wait),
            lambda: _read_servicebus(connection, broker.dead_letter_queue, wait),
            fresh_queue=not real,
            settle_seconds=30 if real else 0,
            holds_scheduled=real,
        )
    finally:
        await broker.close()
        if real:
            await _drain_servicebus(connection, broker, wait)


async def _drain_servicebus(connection: ServiceBusConnection, broker: ServiceBusBroker, wait: float) -> None:
    for queue in (broker.queue, broker.dead_letter_queue):
        await _read_servicebus(connection, queue, wait)


async def _servicebus_double() -> AsyncIterator[Harness]:
    """The Service Bus broker against the wire-level doubles of ``tests/doubles``.

    Not evidence about the service; it runs the suite's Service Bus code (the broker, and reading
    back through the SDK's receiver) where no namespace can be reached.
    """
    queue = f"contract-{uuid.uuid4().hex[:12]}"
    async with FakeServiceBus({queue, f"{queue}.dead-letter"}) as bus:
        namespace = f"127.0.0.1:{bus.port}"

        def runtime_properties(request: HttpRequest) -> Reply:
            # GET /<queue> or /<queue>.dead-letter: what the AMQP double holds, locked messages
            # counting as active as the service counts them.
            entity = path_of(request).strip("/")
            if entity not in bus.queues:
                return empty_feed()
            return queue_entry(
                namespace,
                entity,
                active=bus.active(entity),
                dead_lettered=bus.dead_letter_count(entity),
                scheduled=0,
            )

        transport = AtomTransport(runtime_properties)
        connection = ServiceBusConnection.from_connection_string(bus.connection_string())
        async for harness in _servicebus(connection, queue, real=False, http_transport=transport):
            yield harness


async def _read_servicebus(connection: ServiceBusConnection, queue: str, wait: float) -> list[Received]:
    """Receive and delete everything on the queue; ``wait`` is how long an empty queue is waited on."""
    from azure.servicebus import ServiceBusReceiveMode
    from azure.servicebus.aio import ServiceBusClient

    credential = None
    if connection.kind == "connection_string":
        client = ServiceBusClient.from_connection_string(connection.connection_string)
    else:
        credential = connection.credential()
        client = ServiceBusClient(connection.fully_qualified_namespace, credential)
    received = []
    try:
        async with (
            client,
            client.get_queue_receiver(
                queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as receiver,
        ):
            while taken := await receiver.receive_messages(max_message_count=100, max_wait_time=wait):
                for m in taken:
                    headers = {_text(k): _text(v) for k, v in (m.application_properties or {}).items()}
                    received.append(Received(str(m.message_id), b"".join(m.body), headers))
    finally:
        if credential is not None:
            await credential.close()
    return received
