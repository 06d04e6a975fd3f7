"""Idempotency-Key as the IETF draft has it: in flight until confirmed, 409 meanwhile, 422 for another
body, released by a failed send, and a replay answers what the first request got."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from shared.brokers.base import OutgoingMessage
from shared.brokers.stub import StubBroker
from shared.errors import BrokerError, IdempotencyConflictError, IdempotencyMismatchError
from shared.pipeline.accept import Accepted, Accepter
from shared.pipeline.hooks import Hooks
from shared.store.store import Store
from shared.tasks import registry

ORDER = json.dumps([{"type": "echo", "payload": {"message": 1}}, {"type": "echo"}]).encode()


class SlowBroker(StubBroker):
    """Holds each send until ``release`` is set; refuses it when ``refuse`` is set."""

    def __init__(self) -> None:
        super().__init__("tasks")
        self.release = asyncio.Event()
        self.refuse = False
        self.sends = 0

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> None:
        self.sends += 1
        await self.release.wait()
        if self.refuse:
            raise BrokerError("queue 'tasks': refused")
        await super().send_batch(messages)


def accepter_for(broker: StubBroker, store: Store) -> Accepter:
    return Accepter(broker, store, registry, Hooks(), max_backlog=1000)


async def test_concurrent_requests_with_one_key_send_once_and_the_others_get_409(store: Store) -> None:
    # Given a broker that is slow to confirm
    broker = SlowBroker()
    accepter = accepter_for(broker, store)

    # When 50 requests with the same key and body arrive together, and the broker then confirms
    requests = [asyncio.ensure_future(accepter.accept(ORDER, "order-7")) for _ in range(50)]
    await asyncio.sleep(0.1)
    broker.release.set()
    results = await asyncio.gather(*requests, return_exceptions=True)

    # Then exactly one was sent; the other 49 were told a request with that key is in flight
    accepted = [r for r in results if isinstance(r, Accepted)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflictError)]
    assert (len(accepted), len(conflicts)) == (1, 49)
    assert broker.sends == 1
    assert len(broker.messages) == 2
    # And once it is done, the same request is answered with the same ids, without sending
    replay = await accepter.accept(ORDER, "order-7")
    assert (replay.ids, replay.is_batch, replay.replayed) == (accepted[0].ids, True, True)
    assert broker.sends == 1


async def test_a_failed_send_releases_the_key_and_no_request_is_told_it_was_accepted(store: Store) -> None:
    # Given a broker that will refuse the send
    broker = SlowBroker()
    broker.refuse = True
    accepter = accepter_for(broker, store)

    # When concurrent requests share a key and the send fails
    requests = [asyncio.ensure_future(accepter.accept(ORDER, "order-8")) for _ in range(10)]
    await asyncio.sleep(0.1)
    broker.release.set()
    results = await asyncio.gather(*requests, return_exceptions=True)

    # Then none got ids that were never queued: one saw the refusal, the others the conflict
    assert not [r for r in results if isinstance(r, Accepted)]
    assert sum(isinstance(r, BrokerError) for r in results) == 1
    assert sum(isinstance(r, IdempotencyConflictError) for r in results) == 9
    # And the key is free again for the client's retry
    broker.refuse = False
    await asyncio.sleep(1.05)  # past the second in which submissions fail fast after a refusal
    retried = await accepter.accept(ORDER, "order-8")
    assert not retried.replayed
    assert len(broker.messages) == 2


async def test_the_same_key_with_another_body_is_refused(store: Store) -> None:
    broker = StubBroker()
    accepter = accepter_for(broker, store)
    await accepter.accept(ORDER, "order-9")

    with pytest.raises(IdempotencyMismatchError):
        await accepter.accept(json.dumps({"type": "echo"}).encode(), "order-9")
    assert len(broker.messages) == 2
