"""The RabbitMQ topology of a work queue: the queue, its dead-letter exchange and dead-letter queue.

The RabbitMQ extension only requeues a failed message four times; on the fifth failure it rejects it
without requeue, and the broker hands it to the queue's dead-letter exchange. The extension itself no
longer declares anything (it requires the queue to exist), so whoever starts first declares:

* ``<queue>``: durable, ``x-dead-letter-exchange`` = ``<queue>.dlx``;
* ``<queue>.dlx``: durable fanout exchange, so the message keeps its routing key and still arrives;
* ``<queue>.dead-letter``: durable queue bound to it.

Messages that must wait (a retry's backoff, a delayed task) wait without a plugin in per-tier wait
queues ``<queue>.wait.<N>s``, declared on first use: every message in a tier has the same TTL, so
they expire in order, and on expiry the broker dead-letters them through the default exchange back
to ``<queue>``. A wait is split into tiers of powers of two seconds; a message back early waits again
in the tier of what remains (the pipeline checks the task's ``not_before``).

The pipeline's sender (``shared/brokers/rabbitmq.py``) and the project's setup
(``local/services/topology.py``, run by ``services up``) both declare through this one module; the
local host's ``rabbitMQTrigger``, like the extension's, declares nothing. The two sides must agree
exactly, or the second declaration fails with ``PRECONDITION_FAILED``. It depends on aio-pika only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import ChannelPreconditionFailed

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE_HEADER = "x-dead-letter-exchange"
#: Wait tiers in seconds: 1 s to 2^19 s (about six days); longer waits take several.
WAIT_TIERS: tuple[int, ...] = tuple(2**n for n in range(20))


def wait_tier(seconds: float) -> int:
    """The tier a wait of ``seconds`` starts in: the longest not past it (1 s for a shorter wait)."""
    fitting: list[int] = [tier for tier in WAIT_TIERS if tier <= seconds]
    return fitting[-1] if fitting else WAIT_TIERS[0]


def wait_queue(queue: str, tier: int) -> str:
    return f"{queue}.wait.{tier}s"


async def declare_wait_queue(channel: AbstractChannel, queue: str, tier: int) -> str:
    """Declare the wait queue of ``tier`` seconds for ``queue``; its name."""
    name = wait_queue(queue, tier)
    await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-message-ttl": tier * 1000,
            DEAD_LETTER_EXCHANGE_HEADER: "",
            "x-dead-letter-routing-key": queue,
        },
    )
    return name


@dataclass(frozen=True)
class QueueTopology:
    """Names and arguments of one work queue's topology."""

    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    #: False when the queue already existed with other arguments and was kept as it is.
    arguments_applied: bool = True
    arguments: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_queue(cls, queue: str) -> QueueTopology:
        """The topology this module declares for ``queue``."""
        exchange = f"{queue}.dlx"
        return cls(
            queue=queue,
            dead_letter_exchange=exchange,
            dead_letter_queue=f"{queue}.dead-letter",
            arguments={DEAD_LETTER_EXCHANGE_HEADER: exchange},
        )


async def declare_queue_topology(channel: AbstractChannel, queue_name: str) -> QueueTopology:
    """Declare ``queue_name`` with its dead-letter exchange and queue; idempotent.

    An entity that already exists with other settings is kept as it is (a warning says so) rather
    than failing: the broker answers ``PRECONDITION_FAILED`` and closes the channel, which is then
    reopened, so ``channel`` is usable afterwards either way. A queue that cannot be found even
    passively raises :class:`aio_pika.exceptions.ChannelNotFoundEntity`.
    """
    topology = QueueTopology.for_queue(queue_name)
    try:
        exchange = await channel.declare_exchange(
            topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_letters = await channel.declare_queue(topology.dead_letter_queue, durable=True)
        await dead_letters.bind(exchange, routing_key="")
    except ChannelPreconditionFailed as exc:
        await channel.reopen()
        log.warning(
            "Dead-letter exchange %s or queue %s of queue %s exists with other settings; kept as is (%s)",
            topology.dead_letter_exchange,
            topology.dead_letter_queue,
            queue_name,
            exc,
        )
    try:
        await channel.declare_queue(queue_name, durable=True, arguments=topology.arguments)
    except ChannelPreconditionFailed as exc:
        await channel.reopen()
        await channel.declare_queue(queue_name, passive=True)
        _warn_kept_queue(queue_name, str(exc))
        return QueueTopology(
            queue=queue_name,
            dead_letter_exchange=topology.dead_letter_exchange,
            dead_letter_queue=topology.dead_letter_queue,
            arguments_applied=False,
        )
    return topology


def _warn_kept_queue(queue_name: str, reason: str) -> None:
    # AMQP 0-9-1 cannot read a queue's arguments back, but RabbitMQ names the first argument that
    # differs in its error, which tells us at least when no dead-letter exchange is set at all.
    if DEAD_LETTER_EXCHANGE_HEADER in reason and "current is none" in reason:
        log.warning(
            "Queue %s exists without a dead-letter exchange; kept as is. A message that fails 5 times "
            "is discarded unless a policy sets one (%s)",
            queue_name,
            reason,
        )
        return
    log.warning(
        "Queue %s exists with other arguments; kept as is. A message that fails 5 times goes to its "
        "own dead-letter exchange, or is discarded if it has none (%s)",
        queue_name,
        reason,
    )


async def delete_queue_topology(url: str, queue_name: str) -> None:
    """Delete the queue, its dead-letter queue and exchange and its wait queues.

    For tests and the benchmark, which each work on queues of their own.
    """
    topology = QueueTopology.for_queue(queue_name)
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(topology.queue)
        await channel.queue_delete(topology.dead_letter_queue)
        await channel.exchange_delete(topology.dead_letter_exchange)
        for tier in WAIT_TIERS:  # deleting a queue that does not exist is no error
            await channel.queue_delete(wait_queue(queue_name, tier))
