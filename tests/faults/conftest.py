"""Fault tests: the suite gets a RabbitMQ and a Valkey of its own (started once for the package,
since a RabbitMQ takes seconds to boot), which its tests may stop, freeze and start again; each
test starts with both answering. The measured rows are printed as one table when the session ends."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.faults.hosts import read_output, stop
from tests.faults.load import ROWS, TABLE_HEADER, table_line
from tests.faults.servers import PrivateServer, private_server
from tests.hosting import RunningHost, start_host

#: ``hosts(database, **settings)``: a started host on the suite's servers and Valkey ``database``.
HostFactory = Callable[..., RunningHost]


@pytest.fixture(scope="package")
def state_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="tasklane-faults-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def rabbitmq(state_dir: Path) -> Iterator[PrivateServer]:
    """The suite's own RabbitMQ (never the developer's on 5672)."""
    require_binary("rabbitmq-server")
    with private_server("rabbitmq", state_dir) as server:
        yield server


@pytest.fixture(scope="package")
def valkey(state_dir: Path) -> Iterator[PrivateServer]:
    """The suite's own Valkey (append-only, so its data survives a stop and start)."""
    require_binary("valkey-server")
    with private_server("valkey", state_dir) as server:
        yield server


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("failure semantics, as measured")
        for line in (TABLE_HEADER, "|---" * 10 + "|", *map(table_line, ROWS)):
            terminalreporter.write_line(line)
        for row in ROWS:
            if row.notes:
                terminalreporter.write_line(f"{row.scenario}: {'; '.join(row.notes)}")


@pytest.fixture
def hosts(rabbitmq: PrivateServer, valkey: PrivateServer) -> Iterator[HostFactory]:
    """Start hosts on the suite's servers; each stopped (SIGTERM) at the end of the test.

    Both servers are started first if a test before this one left one stopped.
    """
    rabbitmq.start()
    valkey.start()
    started: list[RunningHost] = []

    def start(database: int, **settings: str) -> RunningHost:
        servers = {"VALKEY_URL": valkey.url(database), "RabbitMQConnection": rabbitmq.url()}
        host = read_output(start_host(settings={**servers, **settings}))
        started.append(host)
        return host

    yield start
    for host in started:
        stop(host)
