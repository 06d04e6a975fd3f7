"""Fixtures for the real services: RabbitMQ, Valkey and Azurite on their usual local ports.

`make test` starts them first (`python -m local services up`). Run alone, a test whose service is
down is skipped with the reason; under CI (``CI=true``) it fails instead, so a missing service can
never pass silently.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from shared.brokers.lanes import PRIORITIES, lane_queue
from shared.platform.rabbitmq_topology import delete_queue_topology
from shared.store.store import Store
from tests.hosting import RunningHost, start_host
from tests.private_valkey import private_valkey_url
from tests.waiting import Clock

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
AZURITE_CONNECTION_STRING = os.environ.get(
    "TEST_AZURITE_CONNECTION_STRING",
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
)
_PORTS = {"rabbitmq": 5672, "azurite": 10000}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail under CI, where everything a test needs must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def require_service(name: str) -> None:
    """Skip (locally) or fail (CI) when ``name`` does not answer on its port.

    Valkey is the session's own, started here on first use.
    """
    if name == "valkey":
        private_valkey(0)
        return
    port = _PORTS[name]
    if not _answers(port):
        skip_or_fail(
            f"{name} is not answering on 127.0.0.1:{port}; start it with `python -m local services up`"
        )


def require_binary(name: str) -> None:
    """Skip (locally) or fail (CI) when the server binary ``name`` is not installed."""
    if shutil.which(name) is None:
        skip_or_fail(f"{name} is not installed; `python -m local services up` installs it")


@pytest.fixture
def rabbitmq_url() -> str:
    require_service("rabbitmq")
    return RABBITMQ_URL


@pytest.fixture
def valkey_url() -> str:
    """Database 15 of this session's own Valkey (``TEST_VALKEY_URL`` chooses another server)."""
    return os.environ.get("TEST_VALKEY_URL") or private_valkey(15)


def private_valkey(database: int) -> str:
    """A database of this session's own Valkey, started on first use; skipped or failed without one."""
    try:
        return private_valkey_url(database)
    except RuntimeError as exc:
        skip_or_fail(str(exc))
        raise


@pytest.fixture
async def store(valkey_url: str) -> AsyncIterator[Store]:
    """The pipeline's Valkey store on the test database of the session's own Valkey, emptied before and
    after (never a developer's: see ``tests/private_valkey.py``)."""
    found = Store(valkey_url)
    await found.client.flushdb()
    yield found
    await found.client.flushdb()
    await found.close()


@pytest.fixture
def azurite_connection_string() -> str:
    require_service("azurite")
    return AZURITE_CONNECTION_STRING


def undocumented_answers(answers: set[tuple[str, str, int]]) -> list[str]:
    """The answers whose status the OpenAPI document does not list for their route."""
    import function_app  # noqa: F401  (declares the routes)
    from functions.http import DECLARED
    from functions.openapi import document
    from shared.tasks import registry

    paths = document(registry, DECLARED)["paths"]
    found = []
    for method, path, status in sorted(answers):
        route = path.removeprefix("/api")
        operation = _operation(paths, route, method.lower())
        if operation is not None and str(status) not in operation["responses"]:
            found.append(f"{method} {path} answered {status}, which the OpenAPI document does not list")
    return found


def _operation(paths: dict[str, Any], route: str, method: str) -> dict[str, Any] | None:
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template.replace(".", r"\.")) + "$"
        if re.match(pattern, route) and method in operations:
            return operations[method]  # type: ignore[no-any-return]
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every status the API answered during the run must be in the OpenAPI document."""
    from tests.hosting import ANSWERS

    undocumented = undocumented_answers(ANSWERS)
    if undocumented and exitstatus == 0:
        print("\n".join(["", "Undocumented answers:", *undocumented]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def host() -> Iterator[RunningHost]:
    """A host of this app for a module's tests: its own queue and Valkey database, stopped and its
    queues deleted afterwards. A module that needs other settings defines its own ``host``."""
    require_service("rabbitmq")
    require_service("valkey")
    running = start_host()
    yield running
    running.stop()
    for priority in PRIORITIES:
        asyncio.run(delete_queue_topology(RABBITMQ_URL, lane_queue(running.queue, priority)))


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves, for the processor's notion of now."""
    return Clock()


@pytest.fixture
def runs() -> Counter[str]:
    """How often each test task type's handler ran."""
    return Counter()
