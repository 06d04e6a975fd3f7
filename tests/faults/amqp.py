"""Straight to the broker: publish raw messages to a work queue and read its dead letters back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika

from shared.platform.rabbitmq_topology import QueueTopology, declare_queue_topology


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    headers: dict[str, Any]

    @property
    def reason(self) -> str:
        return str(self.headers.get("DeadLetterReason", ""))


def publish(url: str, queue: str, messages: Sequence[aio_pika.Message]) -> None:
    """Publish each message to ``queue`` through the default exchange, with confirms."""
    asyncio.run(_publish(url, queue, messages))


async def _publish(url: str, queue: str, messages: Sequence[aio_pika.Message]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await declare_queue_topology(channel, queue)
        for message in messages:
            await channel.default_exchange.publish(message, routing_key=queue)


def dead_letters(url: str, queue: str) -> list[DeadLetter]:
    """Take every message now in ``<queue>.dead-letter``."""
    return asyncio.run(_dead_letters(url, queue))


async def _dead_letters(url: str, queue: str) -> list[DeadLetter]:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        found = await channel.declare_queue(QueueTopology.for_queue(queue).dead_letter_queue, passive=True)
        taken = []
        while (message := await found.get(no_ack=True, fail=False)) is not None:
            taken.append(DeadLetter(message.body, dict(message.headers)))
        return taken


def ready_count(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and not yet acknowledged)."""
    return asyncio.run(_ready_count(url, queue))


async def _ready_count(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
