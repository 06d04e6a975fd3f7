"""Fixtures for the real services: RabbitMQ, Valkey and Azurite on their usual local ports.

`make test` starts them first (`python -m local services up`). Run alone, a test whose service is
down is skipped with the reason; under CI (``CI=true``) it fails instead, so a missing service can
never pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

from shared.store.store import Store

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
VALKEY_URL = os.environ.get("TEST_VALKEY_URL", "valkey://127.0.0.1:6379/15")
AZURITE_CONNECTION_STRING = os.environ.get(
    "TEST_AZURITE_CONNECTION_STRING",
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
)
_PORTS = {"rabbitmq": 5672, "valkey": 6379, "azurite": 10000}


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
    """Skip (locally) or fail (CI) when ``name`` does not answer on its port."""
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
    require_service("valkey")
    return VALKEY_URL


@pytest.fixture
async def store(valkey_url: str) -> AsyncIterator[Store]:
    """The pipeline's Valkey store on the test database, emptied before and after."""
    found = Store(valkey_url)
    await found.client.flushdb()
    yield found
    await found.client.flushdb()
    await found.close()


@pytest.fixture
def azurite_connection_string() -> str:
    require_service("azurite")
    return AZURITE_CONNECTION_STRING
