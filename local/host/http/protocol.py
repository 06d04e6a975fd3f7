"""uvicorn's httptools protocol with the request limits Kestrel puts in front of the Functions host.

* Request headers past :data:`MAX_HEADERS_BYTES` in total (Kestrel's ``MaxRequestHeadersTotalSize``)
  answer 431 and close, as soon as that many bytes have arrived: httptools would otherwise hold a
  header of any size in memory until its line ends.
* Headers still incomplete :data:`HEADERS_TIMEOUT` seconds after they began (Kestrel's
  ``RequestHeadersTimeout``) answer 408 and close, so a client trickling headers holds nothing.
* A connection that sends nothing is closed after the keep-alive timeout, as uvicorn already does
  between requests but not before the first one.

Most requests arrive in one read, so the common path adds a few counters and no timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

#: Kestrel's default ``MaxRequestHeadersTotalSize``: 32 KiB.
MAX_HEADERS_BYTES = 32 * 1024
#: Kestrel's default ``RequestHeadersTimeout``.
HEADERS_TIMEOUT = 30.0
#: uvicorn's default; short, so that idle connections are shed rather than piled up.
KEEP_ALIVE_SECONDS = 5


class _HeadersTooLarge(Exception):
    """Raised inside the parser to stop it; the protocol answers 431."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """An HTTP/1.1 connection with bounded request headers in size and time."""

    headers_timeout = HEADERS_TIMEOUT
    max_headers_bytes = MAX_HEADERS_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True
        #: Bytes read while this request's headers were incomplete, and its complete header fields.
        self._received = 0
        self._field_bytes = 0
        #: Bumped when a request's headers or body completes: a read that saw one is not all headers.
        self._events = 0
        self._headers_timer: asyncio.TimerHandle | None = None
        self._refusal = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_headers_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        events = self._events
        super().data_received(data)
        if not self._awaiting_headers or self._events != events or self.transport.is_closing():
            return
        self._received += len(data)
        if self._received > self.max_headers_bytes:
            self._refuse(431)
        elif self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout, self._refuse, 408)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._received = self._field_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value)
        if self._field_bytes > self.max_headers_bytes:
            self._refusal = 431
            raise _HeadersTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._events += 1
        self._cancel_headers_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_headers = True
        self._events += 1
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to whatever stops the parser, _HeadersTooLarge included.
        if self._refusal:
            self._refuse(self._refusal)
            return
        super().send_400_response(msg)

    def _refuse(self, status: int) -> None:
        self._headers_timer = None
        if self.transport.is_closing():
            return
        self.transport.write(STATUS_LINE[status] + b"content-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()

    def _cancel_headers_timer(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None
