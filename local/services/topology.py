"""Declare the app's RabbitMQ queues before anything consumes them.

The RabbitMQ extension declares nothing: ``func start`` disables a ``rabbitMQTrigger`` function
whose queue does not exist yet, and so does the local host. The app declares its topology when it
first sends, which is too late for its own listeners, so ``services up`` (and ``start``, unless
``--no-services``) declares it: for ``TASKS_QUEUE``, each priority lane's queue (``<q>``,
``<q>.high``, ``<q>.low``) with its dead-letter exchange and queue, exactly as the sender declares
them. Settings are read as Core Tools reads them: the environment, then ``local.settings.json``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import aio_pika
import aiormq

from local.host.errors import HostError
from local.host.settings import read_local_settings
from local.services.service import Report, ServicesError, say
from shared.brokers.lanes import PRIORITIES, lane_queue
from shared.platform.rabbitmq_topology import declare_queue_topology

PROFILE_SETTING = "TASKLANE_PROFILE"
QUEUE_SETTING = "TASKS_QUEUE"
CONNECTION_SETTING = "RabbitMQConnection"
DEFAULT_QUEUE = "tasks"


def app_queues(environ: Mapping[str, str]) -> list[str]:
    """The queues the app consumes under the local (RabbitMQ) profile; none under another."""
    if environ.get(PROFILE_SETTING, "").strip().lower() != "local":
        return []
    queue = environ.get(QUEUE_SETTING, "").strip() or DEFAULT_QUEUE
    return [lane_queue(queue, priority) for priority in PRIORITIES]


def declare_app_queues(environ: Mapping[str, str]) -> list[str]:
    """Declare the topology of every queue the app consumes; the queues declared.

    For a test host or script that has its own ``TASKS_QUEUE``; call it outside an event loop.
    """
    queues = app_queues(environ)
    url = environ.get(CONNECTION_SETTING, "").strip()
    if queues and not url:
        raise ServicesError(f"{CONNECTION_SETTING} is not set: the local profile consumes RabbitMQ")
    if queues:
        asyncio.run(_declare(url, queues))
    return queues


def declare_for_app(app_dir: Path, environ: Mapping[str, str], report: Report = say) -> list[str]:
    """Declare the queues of the app in ``app_dir``, its local settings under ``environ``."""
    try:
        local = read_local_settings(app_dir)
    except HostError as exc:
        raise ServicesError(str(exc)) from exc
    queues = declare_app_queues({**local.values, **environ})
    if queues:
        report(f"rabbitmq: declared {', '.join(queues)} (and their dead-letter queues)")
    return queues


async def _declare(url: str, queues: list[str]) -> None:
    try:
        connection = await aio_pika.connect(url, timeout=10)
    except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
        raise ServicesError(f"cannot declare the app's queues: RabbitMQ did not accept ({exc})") from exc
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await declare_queue_topology(channel, queue)
