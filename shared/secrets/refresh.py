"""A secret that follows Key Vault, and Valkey connections that follow the secret.

In Azure the platform resolves a Key Vault reference when the app starts and re-reads it only about
once a day, so a rotated Valkey password would wait for a restart. :class:`RefreshingSecret` re-reads
its secret when it is older than ``interval`` seconds (in the background, on the next use), and
:func:`valkey_pool` makes each new Valkey connection authenticate with the current value. When Valkey
refuses it (``WRONGPASS``, or ``NOAUTH``), the secret is read again at once and the connection tried
with what Key Vault holds now. Connections already open stay as they are: Valkey keeps them
authenticated when the password changes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from valkey.asyncio.connection import AbstractConnection, ConnectionPool
from valkey.credentials import CredentialProvider
from valkey.exceptions import AuthenticationError

from shared.platform.keyvault import SecretReader, SecretReadError, SecretReference
from shared.secrets import Secret
from shared.secrets.entra import EntraToken, entra_pool

log = logging.getLogger(__name__)

#: Reads closer together than this share one result: many connections refused at once cost one read.
MIN_GAP_SECONDS = 1.0


class RefreshingSecret(Secret):
    """A :class:`Secret` whose value is re-read from its source every ``interval`` seconds.

    ``reveal()`` never waits: it returns the last value read. ``label`` names the secret in logs (a
    setting or a secret URI, never the value). ``fetch`` runs in a worker thread; it raises
    :class:`~shared.platform.keyvault.SecretReadError` when the secret cannot be read.
    """

    __slots__ = (
        "_clock",
        "_fetch",
        "_fresh_at",
        "_interval",
        "_lock",
        "_lock_loop",
        "_read_at",
        "_task",
        "label",
    )

    def __init__(
        self,
        label: str,
        fetch: Callable[[], Secret],
        *,
        initial: Secret | None = None,
        interval: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(initial.reveal() if initial else "")
        self.label = label
        self._fetch = fetch
        self._interval = interval
        self._clock = clock
        # Without a first value the secret is due at once, and read before the first connection.
        self._fresh_at = clock() if initial else -math.inf
        self._read_at = -math.inf  # the last read from the source (the first value was not one)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[bool] | None = None

    @classmethod
    def from_key_vault(
        cls,
        reference: SecretReference,
        *,
        initial: Secret | None,
        interval: float,
        client_id: str | None = None,
    ) -> RefreshingSecret:
        """Follow ``reference`` with azure-identity's default credential (``client_id``: which identity)."""
        reader = SecretReader(client_id=client_id)
        return cls(str(reference), lambda: reader.read(reference), initial=initial, interval=interval)

    # A refreshing secret is one changing thing, not a value: equal only to itself.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"RefreshingSecret({self.label!r}, '**********')"

    @property
    def due(self) -> bool:
        """Whether the last read is older than the refresh interval."""
        return self._clock() - self._fresh_at >= self._interval

    async def refresh(self) -> bool:
        """Read the secret now; whether its value changed.

        A read within :data:`MIN_GAP_SECONDS` of the last one is skipped. A failure is logged with its
        reason and the last value kept, so a Key Vault outage never takes a working password away.
        """
        async with self._loop_lock():
            if self._clock() - self._read_at < MIN_GAP_SECONDS:
                return False
            self._read_at = self._clock()
            try:
                fresh = await asyncio.to_thread(self._fetch)
            except SecretReadError as exc:
                # Not fresh, but not due before another interval: an outage costs one read per interval.
                self._fresh_at = self._clock()
                log.warning("Could not re-read %s: %s; keeping the value read before", self.label, exc.reason)
                return False
            self._fresh_at = self._clock()
            if fresh.reveal() == self._value:
                return False
            self._value = fresh.reveal()
            log.info("%s has a new value in Key Vault; new connections use it", self.label)
            return True

    def refresh_soon(self) -> None:
        """Start :meth:`refresh` in the background when one is due; never waits for it."""
        if not self.due or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(self.refresh())

    def _loop_lock(self) -> asyncio.Lock:
        # An asyncio.Lock belongs to one event loop; tests (and a restarted host) run several in turn.
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock


def valkey_pool(url: str, password: Secret | None, **options: Any) -> ConnectionPool:
    """A connection pool for ``url``; with a :class:`RefreshingSecret` it follows the rotated password,
    with an :class:`~shared.secrets.entra.EntraToken` it authenticates with Microsoft Entra tokens."""
    if isinstance(password, EntraToken):
        return entra_pool(url, password, **options)
    if isinstance(password, RefreshingSecret):
        return _FollowingPool.from_url(url, secret=password, **options)
    return ConnectionPool.from_url(url, password=password.reveal() if password else None, **options)


class _CurrentPassword(CredentialProvider):
    """What each new connection sends with ``AUTH``: the secret's value at that moment."""

    def __init__(self, secret: RefreshingSecret, username: str | None) -> None:
        self._secret = secret
        self._username = username

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self._secret.reveal()
        return (self._username, password) if self._username else (password,)


class _FollowingPool(ConnectionPool):
    """A pool whose connections authenticate with a :class:`RefreshingSecret` and retry once on refusal."""

    def __init__(self, *, secret: RefreshingSecret, **kwargs: Any) -> None:
        kwargs.pop("password", None)  # the secret replaces a password written in the URL
        username = kwargs.pop("username", None)
        super().__init__(credential_provider=_CurrentPassword(secret, username), **kwargs)
        self._secret = secret

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        if not self._secret:  # nothing was resolved at start: read the secret before the first AUTH
            await self._secret.refresh()
        self._secret.refresh_soon()
        tried = self._secret.reveal()
        try:
            await super().ensure_connection(connection)
        except AuthenticationError:
            await self._secret.refresh()
            if self._secret.reveal() == tried:
                raise
            log.warning("Valkey refused the password; connecting again with the value Key Vault holds now")
            await super().ensure_connection(connection)
