"""ServiceBusBroker driven through the real SDK, with doubles only where the SDK meets the network.

Seams, lowest first:

* **Sending: the SDK's AMQP socket.** :class:`tests.doubles.servicebus_amqp.FakeServiceBus` listens
  on a local port and answers AMQP 1.0 as a Service Bus namespace does. The broker is built exactly
  as in production, from a connection string; ``UseDevelopmentEmulator=true`` (the SDK's switch for
  the Service Bus emulator) makes the SDK use plain TCP and keep the port. So the messages, the
  batches, their size limit (read from the link's attach), the SAS token exchange on ``$cbs``, the
  settlement and the mapping of AMQP error conditions to SDK exceptions are all the SDK's own. A seam
  higher up (``ServiceBusSender._send``, or pyamqp's ``SendClientAsync`` as ``sender._handler``)
  would skip most of that and would mean patching private attributes; this one patches nothing.
* **Backlog: azure-core's HTTP transport**, the SDK's documented injection point (``transport=``,
  passed through the broker's ``http_transport``). The administration client keeps its whole
  pipeline and parses Atom XML shaped like the service's recorded responses.
* **Identity:** ``DefaultAzureCredential`` cannot reach Entra ID here, so the identity test swaps it,
  in the broker's module, for a credential with a fixed token; the HTTP side is the transport above.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import azure.identity.aio
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import HttpRequest
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    ServiceBusAuthenticationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
)

from shared.brokers.base import OutgoingMessage
from shared.brokers.servicebus import ServiceBusBroker
from shared.errors import BrokerError, ConfigError
from shared.platform.servicebus_connection import ServiceBusConnection
from tests.doubles.servicebus_amqp import KEY, FakeServiceBus
from tests.doubles.servicebus_http import (
    AtomTransport,
    Reply,
    empty_feed,
    entities,
    error,
    path_of,
    queue_entry,
)

QUEUE = "tasks"
DEAD_LETTER_QUEUE = "tasks.dead-letter"
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Diagnostic-Id": "d-1"}


@pytest.fixture
async def namespace() -> AsyncIterator[FakeServiceBus]:
    async with FakeServiceBus({QUEUE, DEAD_LETTER_QUEUE}, max_message_size=4096) as bus:
        yield bus


def broker_for(
    bus: FakeServiceBus, queue: str = QUEUE, *, key: str = KEY, **options: Any
) -> ServiceBusBroker:
    options.setdefault("retry_total", 0)  # each failure below is meant to surface, not be retried
    connection = ServiceBusConnection.from_connection_string(bus.connection_string(key))
    return ServiceBusBroker(connection, queue, **options)


@pytest.fixture
async def broker(namespace: FakeServiceBus) -> AsyncIterator[ServiceBusBroker]:
    found = broker_for(namespace)
    yield found
    await found.close()


def messages(count: int, size: int = 300, prefix: str = "task") -> list[OutgoingMessage]:
    return [OutgoingMessage(f"{prefix}-{i}", bytes([65 + i % 26]) * size, TRACE) for i in range(count)]


# --- sending -----------------------------------------------------------------------------------


async def test_each_message_arrives_with_its_task_id_headers_and_content_type(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    # Given two tasks, one carrying trace headers
    sent = [
        OutgoingMessage("task-a", b'{"n": 1}', TRACE),
        OutgoingMessage("task-b", b"plain", content_type="text/plain"),
    ]

    # When they are sent as one batch
    await broker.send_batch(sent)

    # Then Service Bus holds both, the task id as message id (duplicate detection keys on it)
    assert [(m.message_id, m.body) for m in namespace.messages] == [
        ("task-a", b'{"n": 1}'),
        ("task-b", b"plain"),
    ]
    assert namespace.messages[0].application_properties == TRACE
    assert namespace.messages[0].content_type == "application/json"
    assert namespace.messages[1].application_properties == {}
    assert namespace.messages[1].content_type == "text/plain"
    assert namespace.transfers == [["task-a", "task-b"]]


async def test_a_batch_over_the_size_limit_is_split_into_several_all_in_order(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    # Given 40 messages of ~300 bytes and a queue whose link takes at most 4 KiB at a time
    sent = messages(40)

    # When they are sent together
    await broker.send_batch(sent)

    # Then they arrive in order, packed into several batches, none of them a batch of one
    assert namespace.ids(QUEUE) == [m.id for m in sent]
    assert 1 < len(namespace.transfers) < 40
    assert all(len(ids) > 1 for ids in namespace.transfers)


async def test_250_messages_at_the_standard_size_limit_arrive_over_multi_frame_transfers() -> None:
    # Given the standard tier's 256 KiB limit: 250 messages of 2 KiB need several batches, most of
    # them larger than one AMQP frame (64 KiB), so they travel as several frames each
    async with FakeServiceBus({QUEUE}) as bus:
        broker = broker_for(bus)
        sent = messages(250, size=2048)

        # When
        await broker.send_batch(sent)
        await broker.close()

    # Then
    assert bus.ids(QUEUE) == [m.id for m in sent]
    assert [m.body for m in bus.messages] == [m.body for m in sent]
    assert len(bus.transfers) > 1
    assert all(frames > 1 for frames in bus.frames_per_transfer[:-1])


async def test_a_batch_of_more_than_4500_small_messages_is_split_by_count(namespace: FakeServiceBus) -> None:
    # Given 4600 tiny messages, together far under the size limit of a roomy link
    namespace.max_message_size = 1024 * 1024
    broker = broker_for(namespace)
    sent = [OutgoingMessage(f"t{i}", b"") for i in range(4600)]

    # When
    await broker.send_batch(sent)
    await broker.close()

    # Then the service got them in two batches, the first as large as it takes
    assert [len(ids) for ids in namespace.transfers] == [4500, 100]
    assert namespace.ids(QUEUE) == [m.id for m in sent]


async def test_a_message_too_large_for_any_batch_fails_naming_it_and_sends_nothing(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    # Given a batch whose middle message alone exceeds the 4 KiB limit
    sent = [*messages(2), OutgoingMessage("task-huge", b"x" * 5000)]

    # When / Then
    with pytest.raises(
        BrokerError, match=r"message 'task-huge' for queue 'tasks' is too large.*at most \d+ bytes"
    ):
        await broker.send_batch(sent)
    assert namespace.messages == []


async def test_scheduled_at_becomes_the_scheduled_enqueue_time(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    # Given one message scheduled for a moment in the future and one not
    when = datetime(2031, 5, 4, 12, 30, 15, 250_000, tzinfo=UTC)
    sent = [OutgoingMessage("task-later", b"{}", scheduled_at=when), OutgoingMessage("task-now", b"{}")]

    # When
    await broker.send_batch(sent)

    # Then the first carries x-opt-scheduled-enqueue-time (milliseconds since the epoch); the second none
    later, now = namespace.messages
    assert later.scheduled_enqueue_time == int(when.timestamp() * 1000)
    assert now.scheduled_enqueue_time is None


async def test_sends_reuse_one_connection(broker: ServiceBusBroker, namespace: FakeServiceBus) -> None:
    # When three sends follow one another
    for n in range(3):
        await broker.send_batch([OutgoingMessage(f"task-{n}", b"{}")])

    # Then one AMQP connection carried them all
    assert namespace.ids(QUEUE) == ["task-0", "task-1", "task-2"]
    assert namespace.connections == 1


async def test_concurrent_sends_take_turns_on_the_shared_sender(namespace: FakeServiceBus) -> None:
    # Given a namespace that is slow to acknowledge, which widens any overlap between sends
    namespace.ack_delay = 0.02
    broker = broker_for(namespace)

    # When eight invocations send at once, before any connection is open
    batches = [messages(25, prefix=f"call{n}") for n in range(8)]
    await asyncio.gather(*(broker.send_batch(batch) for batch in batches))
    await broker.close()

    # Then every message arrived, over a single connection (the SDK's sender is not coroutine-safe:
    # without the broker's lock each call opens its own link and they fail)
    assert sorted(namespace.ids(QUEUE)) == sorted(m.id for batch in batches for m in batch)
    assert namespace.connections == 1


async def test_close_then_send_reconnects(broker: ServiceBusBroker, namespace: FakeServiceBus) -> None:
    # Given a broker that sent and was closed
    await broker.send_batch([OutgoingMessage("task-before", b"{}")])
    await broker.close()

    # When it sends again
    await broker.send_batch([OutgoingMessage("task-after", b"{}")])

    # Then the message arrives over a new connection
    assert namespace.ids(QUEUE) == ["task-before", "task-after"]
    assert namespace.connections == 2


async def test_dead_letters_go_to_the_dead_letter_queue_with_their_reason(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    # Given a task that failed for good, its reason in the headers Service Bus uses for dead letters
    reason = {"DeadLetterReason": "MaxAttemptsExceeded", "DeadLetterErrorDescription": "failed 5 times"}
    dead = OutgoingMessage("task-dead", b'{"n": 1}', reason)

    # When it is dead-lettered
    await broker.dead_letter([dead])

    # Then it is in the queue tasks.dead-letter, as sent, and not in the work queue
    assert broker.dead_letter_queue == DEAD_LETTER_QUEUE
    assert namespace.ids(DEAD_LETTER_QUEUE) == ["task-dead"]
    assert namespace.ids(QUEUE) == []
    (stored,) = namespace.messages
    assert (stored.body, stored.application_properties) == (b'{"n": 1}', reason)


async def test_dead_lettering_without_a_dead_letter_queue_is_a_broker_error_naming_it() -> None:
    # Given a namespace where infra/ made the work queue but not its dead-letter queue
    async with FakeServiceBus({QUEUE}) as bus:
        broker = broker_for(bus)

        # When / Then
        with pytest.raises(BrokerError, match=r"queue 'tasks.dead-letter': the queue does not exist"):
            await broker.dead_letter([OutgoingMessage("task-dead", b"{}")])
        await broker.close()


async def test_an_empty_batch_opens_no_connection(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    await broker.send_batch([])

    assert namespace.connections == 0


async def test_a_missing_queue_is_a_broker_error_naming_it(namespace: FakeServiceBus) -> None:
    broker = broker_for(namespace, "no-such-queue")

    with pytest.raises(BrokerError, match=r"queue 'no-such-queue': the queue does not exist") as raised:
        await broker.send_batch([OutgoingMessage("task-1", b"{}")])
    await broker.close()

    assert isinstance(raised.value.__cause__, MessagingEntityNotFoundError)


async def test_a_wrong_key_is_refused_and_never_shown(
    namespace: FakeServiceBus, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a connection string whose key the namespace does not know
    wrong_key = base64.b64encode(b"not-the-namespace-key-at-all-000").decode()
    broker = broker_for(namespace, key=wrong_key)

    # When it sends, with every logger recording
    with caplog.at_level(logging.DEBUG), pytest.raises(BrokerError) as raised:
        await broker.send_batch([OutgoingMessage("task-1", b"{}")])
    await broker.close()

    # Then the error says access was refused, and neither it nor any log line shows the key
    assert "queue 'tasks': access was refused" in str(raised.value)
    assert isinstance(raised.value.__cause__, ServiceBusAuthenticationError)
    assert wrong_key not in str(raised.value)
    assert wrong_key not in caplog.text
    assert namespace.messages == []


async def test_a_rejected_send_is_a_broker_error_with_the_services_reason(
    broker: ServiceBusBroker, namespace: FakeServiceBus
) -> None:
    namespace.reject_next = (b"com.microsoft:server-busy", "The server is busy. Retry later.")

    with pytest.raises(BrokerError, match=r"queue 'tasks'.*The server is busy") as raised:
        await broker.send_batch([OutgoingMessage("task-1", b"{}")])

    assert isinstance(raised.value.__cause__, ServiceBusServerBusyError)
    assert namespace.messages == []


async def test_a_transient_rejection_is_retried_by_the_sdk(namespace: FakeServiceBus) -> None:
    # Given a broker allowed one retry, and a namespace that is busy once
    broker = broker_for(namespace, retry_total=1)
    namespace.reject_next = (b"com.microsoft:server-busy", "The server is busy. Retry later.")

    # When
    await broker.send_batch([OutgoingMessage("task-1", b"{}")])
    await broker.close()

    # Then the retry got it through, once
    assert namespace.ids(QUEUE) == ["task-1"]


async def test_an_unreachable_namespace_is_a_broker_error() -> None:
    # Given nothing listening on port 1
    connection_string = (
        f"Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};"
        "UseDevelopmentEmulator=true"
    )
    broker = ServiceBusBroker(
        ServiceBusConnection.from_connection_string(connection_string), QUEUE, retry_total=0
    )

    with pytest.raises(BrokerError, match=r"could not send 1 messages to queue 'tasks'") as raised:
        await broker.send_batch([OutgoingMessage("task-1", b"{}")])
    await broker.close()

    assert isinstance(raised.value.__cause__, ServiceBusConnectionError)


def test_a_malformed_connection_string_names_the_setting_not_the_value() -> None:
    value = "sb://tasklane.servicebus.windows.net;key=hunter2"
    broker = ServiceBusBroker(ServiceBusConnection.from_connection_string(value), QUEUE)

    with pytest.raises(
        ConfigError, match="ServiceBusConnection is not a Service Bus connection string"
    ) as raised:
        broker._servicebus_client()

    assert "hunter2" not in str(raised.value)


# --- draining dead letters ---------------------------------------------------------------------


def draining_broker(bus: FakeServiceBus) -> ServiceBusBroker:
    """A broker whose backlog and runtime counts are read from what ``bus`` holds."""

    def runtime_properties(request: HttpRequest) -> Reply:
        entity = path_of(request).strip("/")
        if entity not in bus.queues:
            return empty_feed()
        return queue_entry(
            f"127.0.0.1:{bus.port}",
            entity,
            active=bus.active(entity),
            dead_lettered=bus.dead_letter_count(entity),
            scheduled=0,
        )

    return broker_for(bus, http_transport=AtomTransport(runtime_properties))


async def keep(letter: OutgoingMessage) -> bool:
    return False


async def test_each_drain_that_keeps_a_dead_letter_counts_one_more_delivery_of_it(
    namespace: FakeServiceBus,
) -> None:
    # Given two dead letters, on a dead-letter queue with the default delivery limit
    broker = draining_broker(namespace)
    await broker.dead_letter([OutgoingMessage("task-kept", b"{}"), OutgoingMessage("task-taken", b"{}")])

    async def take_only_taken(letter: OutgoingMessage) -> bool:
        return letter.id == "task-taken"

    # When one drain takes task-taken and keeps task-kept, and a second drain keeps it again
    await broker.drain_dead_letters(take_only_taken)
    after_one = {m.message_id: m.delivery_count for m in namespace.on_queue(DEAD_LETTER_QUEUE)}
    await broker.drain_dead_letters(keep)
    await broker.close()

    # Then the kept letter is still there, unlocked, one delivery more per drain: each drain
    # abandons what it keeps, and an abandon is a failed delivery to Service Bus
    assert after_one == {"task-kept": 1}
    assert [(m.message_id, m.delivery_count) for m in namespace.waiting[DEAD_LETTER_QUEUE]] == [
        ("task-kept", 2)
    ]
    assert namespace.locked == {}


async def test_at_the_default_delivery_limit_ten_drains_push_a_kept_letter_out_of_reach(
    namespace: FakeServiceBus,
) -> None:
    # Given a dead letter on a queue with Service Bus's default limit of 10 deliveries (which is
    # why infra/modules/servicebus.bicep gives the dead-letter queue a limit of 1000)
    broker = draining_broker(namespace)
    await broker.dead_letter([OutgoingMessage("task-kept", b"{}")])

    # When ten drains keep it
    for _ in range(10):
        await broker.drain_dead_letters(keep)

    # Then Service Bus has moved it to the dead-letter queue's own subqueue, where no drain sees it
    offered: list[str] = []

    async def record(letter: OutgoingMessage) -> bool:
        offered.append(letter.id)
        return False

    await broker.drain_dead_letters(record)
    await broker.close()
    assert offered == []
    assert namespace.active(DEAD_LETTER_QUEUE) == 0
    assert [(m.message_id, m.dead_letter_reason) for m in namespace.dead_lettered[DEAD_LETTER_QUEUE]] == [
        ("task-kept", "MaxDeliveryCountExceeded")
    ]


# --- backlog -----------------------------------------------------------------------------------


def backlog_broker(
    answer: Reply | Callable[[HttpRequest], Reply] | None = None, queue: str = QUEUE
) -> tuple[ServiceBusBroker, AtomTransport]:
    """A broker on a connection string whose administration client talks to ``AtomTransport``.

    ``answer`` is a reply to every request, or a function of the request; by default the queue and
    its dead-letter queue exist, empty.
    """
    if answer is None:
        answer = entities({name: empty_queue(name) for name in (queue, f"{queue}.dead-letter")})
    transport = AtomTransport(answer if callable(answer) else lambda request: answer)
    connection_string = (
        f"Endpoint=sb://tasklane.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey={KEY}"
    )
    connection = ServiceBusConnection.from_connection_string(connection_string)
    return ServiceBusBroker(connection, queue, retry_total=0, http_transport=transport), transport


def empty_queue(name: str) -> Reply:
    return queue_entry("tasklane.servicebus.windows.net", name, active=0, dead_lettered=0, scheduled=0)


async def test_backlog_reads_the_runtime_counts_of_the_queue_and_its_dead_letter_queue() -> None:
    # Given a queue with 7 active, 2 dead-lettered (in its own subqueue) and 3 scheduled messages,
    # and 4 messages waiting in its dead-letter queue
    host = "tasklane.servicebus.windows.net"
    broker, transport = backlog_broker(
        entities(
            {
                QUEUE: queue_entry(host, QUEUE, active=7, dead_lettered=2, scheduled=3),
                DEAD_LETTER_QUEUE: queue_entry(
                    host, DEAD_LETTER_QUEUE, active=4, dead_lettered=0, scheduled=0
                ),
            }
        )
    )

    # When
    backlog = await broker.backlog()
    await broker.close()

    # Then active and scheduled are the queue's, and every dead letter counts: 2 + 4
    assert (backlog.queue, backlog.active, backlog.dead_lettered, backlog.scheduled) == (QUEUE, 7, 6, 3)
    assert backlog.total == 10
    # And they were read from GET /<queue> and GET /<queue>.dead-letter, signed with the namespace key
    assert sorted(path_of(r) for r in transport.requests) == [f"/{QUEUE}", f"/{DEAD_LETTER_QUEUE}"]
    assert all(r.method == "GET" for r in transport.requests)
    assert all(r.url.startswith(f"https://{host}/") for r in transport.requests)
    assert all(r.headers["Authorization"].startswith("SharedAccessSignature sr=") for r in transport.requests)
    assert transport.closed


async def test_backlog_without_a_dead_letter_queue_is_a_broker_error_naming_it() -> None:
    # Given a namespace that has the work queue but not its dead-letter queue
    broker, _ = backlog_broker(entities({QUEUE: empty_queue(QUEUE)}))

    # When / Then
    with pytest.raises(BrokerError, match=r"the queue does not exist.*tasks\.dead-letter"):
        await broker.backlog()
    await broker.close()


async def test_backlog_of_a_queue_the_namespace_does_not_have_names_the_queue() -> None:
    # Service Bus answers 200 with an empty feed for an unknown entity; the SDK makes that "not found"
    broker, _ = backlog_broker(empty_feed(), queue="no-such-queue")

    with pytest.raises(
        BrokerError, match=r"backlog of queue 'no-such-queue': the queue does not exist"
    ) as raised:
        await broker.backlog()

    assert isinstance(raised.value.__cause__, ResourceNotFoundError)


@pytest.mark.parametrize(
    ("reply", "expected", "cause"),
    [
        (
            error(404, "The messaging entity could not be found."),
            "the queue does not exist",
            ResourceNotFoundError,
        ),
        (error(401, "claim is empty or token is invalid."), "access was refused", ClientAuthenticationError),
        (
            error(403, "Manage,EntityRead claims required for this operation."),
            "access was refused",
            HttpResponseError,
        ),
    ],
    ids=["404", "401", "403"],
)
async def test_backlog_errors_become_broker_errors_with_the_services_detail(
    reply: Reply, expected: str, cause: type[Exception]
) -> None:
    broker, _ = backlog_broker(reply)

    with pytest.raises(BrokerError) as raised:
        await broker.backlog()

    message = str(raised.value)
    assert f"read the backlog of queue 'tasks': {expected}" in message
    detail = reply.body.split("<Detail>")[1].split(" TrackingId")[0]
    assert detail in message
    assert isinstance(raised.value.__cause__, cause)


# --- identity ----------------------------------------------------------------------------------


class FixedTokenCredential:
    """Stands in for DefaultAzureCredential, which cannot reach Entra ID from here."""

    made: list[FixedTokenCredential] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.scopes: list[str] = []
        self.closed = False
        FixedTokenCredential.made.append(self)

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken("identity-token", 4_102_444_800)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fixed_identity(monkeypatch: pytest.MonkeyPatch) -> list[FixedTokenCredential]:
    FixedTokenCredential.made = []
    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", FixedTokenCredential)
    return FixedTokenCredential.made


async def test_an_identity_connection_uses_the_managed_identity_and_closes_it(
    fixed_identity: list[FixedTokenCredential],
) -> None:
    # Given an identity-based connection to a namespace with a user-assigned identity's client id
    namespace = "tasklane.servicebus.windows.net"
    requests: list[HttpRequest] = []

    queues = entities(
        {
            QUEUE: queue_entry(namespace, QUEUE, active=4, dead_lettered=0, scheduled=0),
            DEAD_LETTER_QUEUE: queue_entry(
                namespace, DEAD_LETTER_QUEUE, active=0, dead_lettered=0, scheduled=0
            ),
        }
    )

    def answer(request: HttpRequest) -> Reply:
        requests.append(request)
        return queues(request)

    connection = ServiceBusConnection(
        "ServiceBusConnection", "default", fully_qualified_namespace=namespace, client_id="00000000-aaaa-bbbb"
    )
    broker = ServiceBusBroker(connection, QUEUE, http_transport=AtomTransport(answer))

    # When it reads the backlog and closes
    backlog = await broker.backlog()
    await broker.close()

    # Then one credential, for that identity, signed both requests with a bearer token, and was closed
    assert backlog.active == 4
    (credential,) = fixed_identity
    assert credential.options == {"managed_identity_client_id": "00000000-aaaa-bbbb"}
    assert set(credential.scopes) == {"https://servicebus.azure.net//.default"}
    assert sorted(path_of(r) for r in requests) == [f"/{QUEUE}", f"/{DEAD_LETTER_QUEUE}"]
    assert all(r.url.startswith(f"https://{namespace}/") for r in requests)
    assert all(r.headers["Authorization"] == "Bearer identity-token" for r in requests)
    assert credential.closed
