"""An azure-core HTTP transport that answers as Service Bus's Atom management endpoint does.

The administration client keeps its whole pipeline (headers, SAS or bearer credential policy,
retry policy, XML decoding, error mapping, model parsing); only the socket is replaced. The bodies
below have the shape of responses recorded from the service in the SDK's own test recordings
(``sdk/servicebus/azure-servicebus/tests/recordings/mgmt_tests/``): an Atom ``entry`` holding a
``QueueDescription`` for a queue, an empty ``feed`` (with status 200) for a queue that does not
exist, and an ``<Error>`` document for 401/403/404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from azure.core.pipeline.transport import AsyncHttpResponse, AsyncHttpTransport, HttpRequest

_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Reply:
    """One HTTP response: status, body and content type."""

    status: int
    body: str
    content_type: str


def queue_entry(host: str, queue: str, *, active: int, dead_lettered: int, scheduled: int) -> Reply:
    """``GET /<queue>`` for an existing queue: its description with the runtime counts."""
    url = f"https://{host}/{queue}?enrich=false&amp;api-version=2021-05"
    total = active + dead_lettered + scheduled
    body = (
        '<entry xmlns="http://www.w3.org/2005/Atom">'
        f'<id>{url}</id><title type="text">{queue}</title>'
        "<published>2026-07-01T08:30:00Z</published><updated>2026-07-01T08:30:00Z</updated>"
        f'<author><name>tasklane-test</name></author><link rel="self" href="{url}"/>'
        '<content type="application/xml">'
        '<QueueDescription xmlns="http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"'
        ' xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
        "<LockDuration>PT1M</LockDuration><MaxSizeInMegabytes>1024</MaxSizeInMegabytes>"
        "<RequiresDuplicateDetection>true</RequiresDuplicateDetection><RequiresSession>false</RequiresSession>"
        "<DefaultMessageTimeToLive>P14D</DefaultMessageTimeToLive>"
        "<DeadLetteringOnMessageExpiration>false</DeadLetteringOnMessageExpiration>"
        "<DuplicateDetectionHistoryTimeWindow>PT10M</DuplicateDetectionHistoryTimeWindow>"
        "<MaxDeliveryCount>10</MaxDeliveryCount><EnableBatchedOperations>true</EnableBatchedOperations>"
        f"<SizeInBytes>{total * 512}</SizeInBytes><MessageCount>{total}</MessageCount>"
        "<IsAnonymousAccessible>false</IsAnonymousAccessible><AuthorizationRules></AuthorizationRules>"
        "<Status>Active</Status><CreatedAt>2026-07-01T08:30:00.707Z</CreatedAt>"
        "<UpdatedAt>2026-07-01T08:30:00.73Z</UpdatedAt><AccessedAt>2026-07-20T10:00:00Z</AccessedAt>"
        "<SupportOrdering>true</SupportOrdering>"
        '<CountDetails xmlns:d2p1="http://schemas.microsoft.com/netservices/2011/06/servicebus">'
        f"<d2p1:ActiveMessageCount>{active}</d2p1:ActiveMessageCount>"
        f"<d2p1:DeadLetterMessageCount>{dead_lettered}</d2p1:DeadLetterMessageCount>"
        f"<d2p1:ScheduledMessageCount>{scheduled}</d2p1:ScheduledMessageCount>"
        "<d2p1:TransferMessageCount>0</d2p1:TransferMessageCount>"
        "<d2p1:TransferDeadLetterMessageCount>0</d2p1:TransferDeadLetterMessageCount>"
        "</CountDetails>"
        "<AutoDeleteOnIdle>P10675199DT2H48M5.4775807S</AutoDeleteOnIdle>"
        "<EnablePartitioning>false</EnablePartitioning>"
        "<EntityAvailabilityStatus>Available</EntityAvailabilityStatus><EnableExpress>false</EnableExpress>"
        "<MaxMessageSizeInKilobytes>256</MaxMessageSizeInKilobytes>"
        "</QueueDescription></content></entry>"
    )
    return Reply(200, body, "application/atom+xml; type=entry; charset=utf-8")


def empty_feed() -> Reply:
    """What Service Bus answers, with status 200, to ``GET /<queue>`` for a queue it does not have."""
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title type="text">Publicly Listed Services</title>'
        '<subtitle type="text">This is the list of publicly-listed services currently available.</subtitle>'
        "<id>uuid:d031860a-7216-45ed-b6b8-888ccb4b6682;id=71903</id><updated>2026-07-01T08:30:00Z</updated>"
        "<generator>Service Bus 1.1</generator></feed>"
    )
    return Reply(200, body, "application/atom+xml; type=feed; charset=utf-8")


def entities(replies: Mapping[str, Reply]) -> Callable[[HttpRequest], Reply]:
    """Answers ``GET /<entity>`` with ``replies[entity]``, and as for a missing queue otherwise.

    The broker's backlog reads two entities, the work queue and ``<queue>.dead-letter``.
    """
    return lambda request: replies.get(path_of(request).strip("/")) or empty_feed()


def error(status: int, detail: str) -> Reply:
    """Service Bus's error document, as for an invalid token (401) or a missing claim (403)."""
    tracking = "TrackingId:9ac014f7-4279-4707-b4e5-16ddb3bcc1b3_G1, SystemTracker:test"
    body = f"<Error><Code>{status}</Code><Detail>{detail} {tracking}</Detail></Error>"
    return Reply(status, body, "application/xml; charset=utf-8")


class _Response(AsyncHttpResponse):
    def __init__(self, request: HttpRequest, reply: Reply) -> None:
        super().__init__(request, None)
        self.status_code = reply.status
        self.reason = _REASONS.get(reply.status, "")
        self.content_type = reply.content_type
        self.headers = {"Content-Type": reply.content_type, "Server": "Microsoft-HTTPAPI/2.0"}
        self._body = reply.body.encode()

    def body(self) -> bytes:
        return self._body


class AtomTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """Answers every request with ``answer(request)`` and keeps the requests for assertions."""

    def __init__(self, answer: Callable[[HttpRequest], Reply]) -> None:
        self.answer = answer
        self.requests: list[HttpRequest] = []
        self.closed = False

    async def send(self, request: HttpRequest, **kwargs: Any) -> AsyncHttpResponse:
        self.requests.append(request)
        return _Response(request, self.answer(request))

    async def open(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True

    async def __aenter__(self) -> AtomTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def path_of(request: HttpRequest) -> str:
    return urlparse(request.url).path
