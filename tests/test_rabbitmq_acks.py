"""The RabbitMQ trigger's ack tracker on its own: which ``basic.ack`` frames a run of deliveries gets.

A recording channel stands in for the broker; the frames written with it are the whole behaviour
(the trigger's tests check the same against a real RabbitMQ).
"""

from __future__ import annotations

import asyncio

import pytest

from local.host.triggers.rabbitmq_acks import AckTracker

OK, SETTLED, DELIVERED = "ok", "settled", "delivered"
Event = tuple[str, int]


class RecordingChannel:
    """Records each ack as ``(tag, multiple)``; the gate holds writes back, ``error`` fails them."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: Exception | None = None

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))
        await self.gate.wait()
        if self.error is not None:
            raise self.error


def tracker_of(channel: RecordingChannel, delivered: int) -> AckTracker:
    tracker = AckTracker(channel)
    for tag in range(1, delivered + 1):
        tracker.delivered(tag)
    return tracker


@pytest.mark.parametrize(
    ("delivered", "turns", "expected"),
    [
        pytest.param(1, [[(OK, 1)]], [(1, False)], id="one message: a single ack"),
        pytest.param(
            3, [[(OK, 3), (OK, 1), (OK, 2)]], [(3, True)], id="finished 3,1,2 in one turn: one multiple ack"
        ),
        pytest.param(
            3,
            [[(OK, 3)], [(OK, 1)], [(OK, 2)]],
            [(3, False), (1, False), (2, False)],
            id="finished 3,1,2 in turns of their own: none waits for an older one",
        ),
        pytest.param(
            5,
            [[(OK, 1), (OK, 2), (OK, 4), (OK, 5)]],
            [(2, True), (4, False), (5, False)],
            id="a running message: the prefix before it together, those after one by one",
        ),
        pytest.param(
            5,
            [[(OK, 1), (OK, 3)], [(SETTLED, 2), (OK, 4), (OK, 5)]],
            [(1, False), (3, False), (5, True)],
            id="a failed message is a gap until its own reject or ack settled it",
        ),
        pytest.param(
            3,
            [[(OK, 2), (OK, 3)], [(DELIVERED, 4), (OK, 4)]],
            [(2, False), (3, False), (4, False)],
            id="one left for redelivery is never covered",
        ),
        pytest.param(
            4,
            [[(OK, 1), (OK, 2)], [(OK, 3), (OK, 4)]],
            [(2, True), (4, True)],
            id="each turn acks what finished since the last",
        ),
    ],
)
async def test_finished_deliveries_get_these_acks(
    delivered: int, turns: list[list[Event]], expected: list[tuple[int, bool]]
) -> None:
    # Given a channel's deliveries 1..delivered
    channel = RecordingChannel()
    tracker = tracker_of(channel, delivered)
    # When they finish, fail or are delivered turn by turn
    for turn in turns:
        acked = []
        for event, tag in turn:
            if event == OK:
                acked.append(tracker.succeeded(tag))
            elif event == SETTLED:
                tracker.settled(tag)
            else:
                tracker.delivered(tag)
        await asyncio.gather(*acked)
    # Then exactly these acks were written, in this order
    assert channel.acks == expected


async def test_what_finishes_while_an_ack_is_written_goes_into_the_next() -> None:
    # Given message 1's ack is being written (and the write is slow)
    channel = RecordingChannel()
    tracker = tracker_of(channel, 3)
    channel.gate.clear()
    first = tracker.succeeded(1)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert channel.acks == [(1, False)]
    # When 2 and 3 finish meanwhile
    rest = [tracker.succeeded(2), tracker.succeeded(3)]
    await asyncio.sleep(0)
    # Then nobody is told "acked" before the write completed, and the next flush covers 2 and 3
    assert not first.done()
    assert channel.acks == [(1, False)]
    channel.gate.set()
    await asyncio.gather(first, *rest)
    assert channel.acks == [(1, False), (3, True)]


async def test_a_failed_ack_fails_every_message_it_covered() -> None:
    # Given a channel that is gone
    channel = RecordingChannel()
    channel.error = ConnectionError("channel closed")
    tracker = tracker_of(channel, 3)
    # When 1 and 2 finish together
    acked = [tracker.succeeded(1), tracker.succeeded(2)]
    results = await asyncio.gather(*acked, return_exceptions=True)
    # Then each of them learns that its ack was not written
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert channel.acks == [(2, True)]
