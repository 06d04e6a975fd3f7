"""A Microsoft Entra access token as Valkey's password: Azure Managed Redis with no stored secret.

Azure Managed Redis accepts a connection whose user is the identity's object id and whose password is
an access token for ``https://redis.azure.com/.default``. A token expires (a managed identity's after
about a day), and the cache expects each connection to send ``AUTH`` with a renewed token before then
(learn.microsoft.com/azure/redis/entra-for-authentication: "at least three minutes before token
expiry", staggered). :class:`EntraToken` holds the current token and renews it between
:data:`RENEW_BEFORE` + :data:`RENEW_SPREAD` and :data:`RENEW_BEFORE` seconds before it expires, inside
the window in which azure-identity hands out a new one (its ``DEFAULT_REFRESH_OFFSET``, 300 s); the
spread keeps instances from renewing together. :func:`entra_pool` authenticates every new connection
with the current token and sends ``AUTH`` again on a pooled connection before its first command after
a renewal.

Microsoft's ``redis-entraid`` package does the same for redis-py through that client's streaming
credential providers, which valkey-py does not have; this is the part of it the store needs, over
azure-identity. The user name is the token's ``oid`` claim, as ``redis-entraid`` reads it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from valkey.asyncio.connection import AbstractConnection, ConnectionPool
from valkey.credentials import CredentialProvider

from shared.secrets import Secret

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken

log = logging.getLogger(__name__)

#: The scope of Azure Managed Redis (and Azure Cache for Redis) data-plane tokens.
REDIS_SCOPE = "https://redis.azure.com/.default"
#: Renew at the latest this many seconds before the token expires (the cache asks for three minutes).
RENEW_BEFORE = 240.0
#: ... and at the earliest this many seconds before that, chosen at random per token.
RENEW_SPREAD = 60.0
#: After a failed renewal, or one that returned the same token, try again this much later.
RETRY_SECONDS = 30.0
#: Renewals closer together than this share one result: many connections at once cost one request.
MIN_GAP_SECONDS = 1.0


class TokenSource(Protocol):
    """What azure-identity's credentials offer: ``get_token(scope)`` (run in a worker thread)."""

    def get_token(self, *scopes: str) -> AccessToken: ...


class EntraToken(Secret):
    """The current Entra access token for Azure Managed Redis; :meth:`reveal` returns it.

    ``credential`` is any azure-identity credential; without one, azure-identity's
    ``DefaultAzureCredential`` is made on first use, with ``client_id`` naming the user-assigned managed
    identity (in Azure) and the developer's sign-in elsewhere. ``clock`` tells epoch seconds, as the
    token's ``expires_on`` does; ``spread`` picks where in the renewal window a token is renewed.
    """

    __slots__ = (
        "_client_id",
        "_clock",
        "_credential",
        "_expires_on",
        "_lock",
        "_lock_loop",
        "_read_at",
        "_renew_at",
        "_spread",
        "_task",
        "username",
    )

    def __init__(
        self,
        credential: TokenSource | None = None,
        *,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        spread: Callable[[], float] = random.random,
    ) -> None:
        super().__init__("")
        self._credential = credential
        self._client_id = client_id
        self._clock = clock
        self._spread = spread
        self._expires_on = -math.inf
        self._renew_at = -math.inf
        self._read_at = -math.inf
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[bool] | None = None
        #: The identity's object id, from the token (the user name Azure Managed Redis expects).
        self.username = ""

    # A token is one changing thing, not a value: equal only to itself.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"EntraToken({REDIS_SCOPE!r}, '**********')"

    @property
    def expired(self) -> bool:
        return self._clock() >= self._expires_on

    @property
    def due(self) -> bool:
        """Whether the token should be renewed now."""
        return self._clock() >= self._renew_at

    async def refresh(self) -> bool:
        """Get a token now; whether it differs from the one held.

        A request within :data:`MIN_GAP_SECONDS` of the last is skipped. A failure is logged with its
        reason and the held token kept (it may still be valid); the next attempt is due
        :data:`RETRY_SECONDS` later.
        """
        async with self._loop_lock():
            if self._clock() - self._read_at < MIN_GAP_SECONDS:
                return False
            self._read_at = self._clock()
            try:
                token = await asyncio.to_thread(self._source().get_token, REDIS_SCOPE)
            except Exception as exc:  # azure-identity raises several unrelated types; all mean "no token"
                self._renew_at = self._clock() + RETRY_SECONDS
                log.warning(
                    "Could not get a Microsoft Entra token for Valkey: %s; keeping the one held",
                    _first_line(exc),
                )
                return False
            if token.token == self._value:
                # azure-identity still hands out its cached token; it renews inside its own window.
                self._renew_at = min(self._clock() + RETRY_SECONDS, self._expires_on)
                return False
            self._value = token.token
            self._expires_on = float(token.expires_on)
            self._renew_at = renewal_time(self._expires_on, self._spread())
            self.username = object_id(token.token)
            if not self.username:
                log.error("The Microsoft Entra token for Valkey names no object id (oid claim)")
            log.info(
                "Got a Microsoft Entra token for Valkey, valid for %.0f s", self._expires_on - self._clock()
            )
            return True

    def refresh_soon(self) -> None:
        """Start :meth:`refresh` in the background when one is due; never waits for it."""
        if not self.due or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self.refresh())

    def _source(self) -> TokenSource:
        if self._credential is None:
            # Imported here: azure-identity costs ~150 ms at import; hosts with a password never need it.
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
        return self._credential

    def _loop_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; tests (and a restarted host) run several in turn.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


def renewal_time(expires_on: float, spread: float) -> float:
    """When a token expiring at ``expires_on`` is renewed; ``spread`` in [0, 1) picks the moment."""
    return expires_on - RENEW_BEFORE - RENEW_SPREAD * spread


def object_id(token: str) -> str:
    """The ``oid`` claim of a JWT access token ('' when it has none). Read, not verified: the cache
    verifies the token; the claim only names the user the token is presented for."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return ""
    oid = claims.get("oid") if isinstance(claims, dict) else None
    return oid if isinstance(oid, str) else ""


def entra_pool(url: str, token: EntraToken, **options: Any) -> ConnectionPool:
    """A connection pool for ``url`` whose connections authenticate with ``token`` and follow its renewals."""
    return _EntraPool.from_url(url, token=token, **options)


class _HandedOut(CredentialProvider):
    """One connection's credentials: the token's current value, remembering which it handed out."""

    def __init__(self, token: EntraToken) -> None:
        self._token = token
        self.sent = ""

    def get_credentials(self) -> tuple[str, str]:
        self.sent = self._token.reveal()
        return self._token.username, self.sent


class _EntraPool(ConnectionPool):
    """A pool whose connections authenticate with an :class:`EntraToken`, and again after a renewal."""

    def __init__(self, *, token: EntraToken, **kwargs: Any) -> None:
        # The token is the password and its oid the user name; a URL's own would be wrong for the cache.
        kwargs.pop("password", None)
        kwargs.pop("username", None)
        super().__init__(**kwargs)
        self._token = token

    def make_connection(self) -> AbstractConnection:
        # Each connection its own provider, which remembers the token it signed in with.
        return self.connection_class(
            **{**self.connection_kwargs, "credential_provider": _HandedOut(self._token)}
        )

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not self._token or self._token.expired:
            await self._token.refresh()
        else:
            self._token.refresh_soon()
        await super().ensure_connection(connection)
        handed = connection.credential_provider
        if isinstance(handed, _HandedOut) and handed.sent != self._token.reveal():
            # Connected with an older token, which the cache would reject once it expires.
            try:
                await connection.send_command("AUTH", *handed.get_credentials(), check_health=False)
                await connection.read_response()
            except BaseException:
                await connection.disconnect()
                raise
            log.debug("Valkey connection re-authenticated with the renewed token")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
