"""The host's HTTP front bounds what a client can hold: header size, idle connections."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.host.http.protocol import MAX_HEADERS_BYTES
from tests.apps import write_app
from tests.hosting import RunningHost, start_host
from tests.waiting import eventually

APP = """
    import azure.functions as func

    app = func.FunctionApp()


    @app.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok")
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHost]:
    app = write_app(tmp_path_factory.mktemp("front") / "app", APP)
    running = start_host(app, settings={"VALKEY_URL": "unused"})
    yield running
    running.stop()


def _connect(host: RunningHost) -> socket.socket:
    address = httpx.URL(host.base_url)
    return socket.create_connection((address.host, address.port), timeout=10)


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def _send_endless_header(host: RunningHost, megabytes: int) -> None:
    """Send one header line of up to ``megabytes`` MB, until the host closes the connection."""
    chunk = b"a" * 65536
    with _connect(host) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nhost: x\r\nx-big: ")
        try:
            for _ in range(megabytes * 16):
                sock.sendall(chunk)
        except OSError:
            pass  # closed by the host: what is expected


def test_headers_past_32_kib_answer_431(host: RunningHost) -> None:
    # Given a request whose one header is 64 KiB
    request = b"GET /api/health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 65536 + b"\r\n\r\n"

    # When it is sent
    with _connect(host) as sock:
        sock.sendall(request)
        answer = sock.recv(4096)

    # Then the host answers 431 and the next client is served as usual
    assert answer.startswith(b"HTTP/1.1 431 "), answer
    assert httpx.get(f"{host.base_url}/api/health", headers={"x-small": "a" * 1000}).text == "ok"
    assert MAX_HEADERS_BYTES == 32 * 1024


def test_four_50_mb_headers_do_not_grow_the_host(host: RunningHost) -> None:
    # Given the host's peak memory so far
    before = _peak_rss_kib(host.process.pid)

    # When four clients at once each send a 50 MB header
    clients = [threading.Thread(target=_send_endless_header, args=(host, 50)) for _ in range(4)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)

    # Then the host's peak memory grew by far less than what was sent, and it still answers
    assert _peak_rss_kib(host.process.pid) - before < 32 * 1024
    assert httpx.get(f"{host.base_url}/api/health").text == "ok"


def test_health_answers_while_200_idle_connections_are_open(host: RunningHost) -> None:
    # Given 200 connections that send nothing
    idle = [_connect(host) for _ in range(200)]
    try:
        # When a client asks for /api/health / Then it is answered
        assert httpx.get(f"{host.base_url}/api/health").text == "ok"

        # And the idle connections are closed by the host once the keep-alive timeout passes
        idle[0].settimeout(30)
        assert idle[0].recv(1) == b""
        eventually(lambda: all(_closed(sock) for sock in idle), within=10, what="idle connections closed")
    finally:
        for sock in idle:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True
