"""Valkey with a Microsoft Entra token instead of a password, as Azure Managed Redis takes it.

The cache's user is the identity's object id and the password its access token, renewed before it
expires and sent again on every open connection. Against this session's own Valkey an ACL user stands in
for the identity (user = the token's ``oid``, password = the token), and a credential double hands out
tokens: no network, no Azure.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import valkey
from azure.core.credentials import AccessToken

from shared.errors import ConfigError, StoreError
from shared.pipeline.settings import Settings
from shared.secrets.entra import (
    MIN_GAP_SECONDS,
    REDIS_SCOPE,
    RENEW_BEFORE,
    RENEW_SPREAD,
    RETRY_SECONDS,
    EntraToken,
    object_id,
    renewal_time,
)
from shared.store.store import Store
from tests.conftest import private_valkey

HOUR = 3600.0


def jwt(claims: dict[str, Any]) -> str:
    """A token shaped like Entra's (header.claims.signature); only the claims are ever read here."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class Clock:
    """Epoch seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


class TokenIssuer:
    """Stands in for azure-identity's credential: the token it is told to hand out, and what was asked."""

    def __init__(self, oid: str, clock: Clock) -> None:
        self.oid = oid
        self.clock = clock
        self.scopes: list[tuple[str, ...]] = []
        self.failure: Exception | None = None
        self._lock = threading.Lock()
        self.issue(lifetime=HOUR)

    def issue(self, *, lifetime: float) -> str:
        """From now on, hand out a new token valid for ``lifetime`` seconds; the token."""
        with self._lock:
            self.token = jwt({"oid": self.oid, "aud": "https://redis.azure.com", "jti": uuid.uuid4().hex})
            self.expires_on = int(self.clock() + lifetime)
            return self.token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        with self._lock:
            self.scopes.append(scopes)
            if self.failure is not None:
                raise self.failure
            return AccessToken(self.token, self.expires_on)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> TokenIssuer:
    return TokenIssuer(f"{uuid.uuid4()}", clock)


@pytest.fixture
def admin(issuer: TokenIssuer) -> Iterator[valkey.Valkey]:
    """This session's Valkey, with an ACL user named after the identity that takes its current token."""
    url = private_valkey(14)
    client = valkey.Valkey.from_url(url)
    client.execute_command("ACL", "SETUSER", issuer.oid, "on", f">{issuer.token}", "~*", "&*", "+@all")
    try:
        yield client
    finally:
        client.execute_command("ACL", "DELUSER", issuer.oid)  # also closes its connections
        client.close()


@pytest.fixture
async def entra_store(admin: valkey.Valkey, issuer: TokenIssuer, clock: Clock) -> Any:
    token = EntraToken(issuer, clock=clock, spread=lambda: 0.5)
    store = Store(private_valkey(14), token)
    try:
        yield store, token
    finally:
        await store.close()


def rotate(admin: valkey.Valkey, issuer: TokenIssuer, *, lifetime: float = HOUR) -> tuple[str, str]:
    """Issue a new token and let Valkey take only it from now on; (old, new)."""
    old = issuer.token
    new = issuer.issue(lifetime=lifetime)
    admin.execute_command("ACL", "SETUSER", issuer.oid, f">{new}", f"<{old}")
    return old, new


def auth_calls(admin: valkey.Valkey) -> int:
    stats = admin.info("commandstats")
    return int(stats.get("cmdstat_auth", {}).get("calls", 0))


# -- the token itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (
            jwt({"oid": "6f1e0c8e-1111-4a2b-9c3d-000000000001", "tid": "t"}),
            "6f1e0c8e-1111-4a2b-9c3d-000000000001",
        ),
        (jwt({"sub": "no object id"}), ""),
        (jwt({"oid": 42}), ""),
        ("not-a-jwt", ""),
        ("a.%%%.c", ""),
        ("a.bm90IGpzb24.c", ""),  # base64 of "not json"
    ],
)
def test_the_user_name_is_the_tokens_object_id(token: str, expected: str) -> None:
    assert object_id(token) == expected


@pytest.mark.parametrize("spread", [0.0, 0.5, 0.999])
def test_a_token_is_renewed_where_azure_identity_renews_and_the_cache_asks(spread: float) -> None:
    expires_on = 10_000.0
    renew_at = renewal_time(expires_on, spread)
    # azure-identity hands out a new token from 300 s before expiry (DEFAULT_REFRESH_OFFSET) ...
    assert expires_on - 300 <= renew_at
    # ... and Azure Managed Redis wants it on the connections at least three minutes before.
    assert renew_at <= expires_on - 180
    assert renew_at == expires_on - RENEW_BEFORE - RENEW_SPREAD * spread


async def test_a_token_asks_for_the_redis_scope_and_names_its_user(issuer: TokenIssuer, clock: Clock) -> None:
    token = EntraToken(issuer, clock=clock, spread=lambda: 0.0)
    assert not token
    assert token.due
    assert await token.refresh() is True
    assert issuer.scopes == [(REDIS_SCOPE,)]
    assert token.reveal() == issuer.token
    assert token.username == issuer.oid
    assert not token.due
    clock.now = issuer.expires_on - RENEW_BEFORE
    assert token.due


async def test_a_token_that_cannot_be_renewed_is_kept_and_tried_again_later(
    issuer: TokenIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    token = EntraToken(issuer, clock=clock, spread=lambda: 0.0)
    await token.refresh()
    held = token.reveal()
    # Given the identity endpoint fails when renewal is due
    clock.now = issuer.expires_on - RENEW_BEFORE
    issuer.failure = RuntimeError("ManagedIdentityCredential: the IMDS endpoint did not answer")
    # When the token is renewed, then it is kept, the reason logged, and renewal due again 30 s later
    assert await token.refresh() is False
    assert token.reveal() == held
    assert "the IMDS endpoint did not answer" in caplog.text
    assert held not in caplog.text
    assert not token.due
    clock.now += RETRY_SECONDS
    assert token.due


async def test_renewals_at_once_cost_one_request(issuer: TokenIssuer, clock: Clock) -> None:
    token = EntraToken(issuer, clock=clock)
    await asyncio.gather(*(token.refresh() for _ in range(20)))
    assert len(issuer.scopes) == 1
    clock.now += MIN_GAP_SECONDS
    issuer.issue(lifetime=HOUR)
    assert await token.refresh() is True


def test_the_token_never_shows_itself(issuer: TokenIssuer, clock: Clock) -> None:
    token = EntraToken(issuer, clock=clock)
    asyncio.run(token.refresh())
    assert issuer.token not in repr(token) + str(token)
    assert token != EntraToken(issuer, clock=clock)


# -- settings ---------------------------------------------------------------------------------------------


def _azure(environ: dict[str, str]) -> dict[str, str]:
    return {
        "TASKLANE_PROFILE": "local",
        "RabbitMQConnection": "amqp://guest:guest@127.0.0.1:5672/",
        "VALKEY_URL": "valkeys://redis-tasklane.westeurope.redis.azure.net:10000/0",
        **environ,
    }


def test_settings_choose_an_entra_token_of_the_apps_identity() -> None:
    # Given app settings as the Bicep sets them
    settings = Settings.from_environ(_azure({"VALKEY_CREDENTIAL": "entra", "AZURE_CLIENT_ID": "client-1"}))
    # Then Valkey's password is an Entra token of that identity, read on first use
    token = settings.valkey_password
    assert isinstance(token, EntraToken)
    assert token._client_id == "client-1"
    assert not token


def test_without_the_setting_the_password_is_a_password() -> None:
    settings = Settings.from_environ(_azure({"VALKEY_PASSWORD": "pa55"}))
    assert settings.valkey_password is not None
    assert not isinstance(settings.valkey_password, EntraToken)
    assert settings.valkey_password.reveal() == "pa55"


def test_an_unknown_credential_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="VALKEY_CREDENTIAL='managed'"):
        Settings.from_environ(_azure({"VALKEY_CREDENTIAL": "managed"}))


# -- the store, against a Valkey whose user is the identity ------------------------------------------------


async def test_the_store_signs_in_as_the_identity_with_its_token(
    entra_store: Any, admin: valkey.Valkey
) -> None:
    store, token = entra_store
    # When the store is first used, then it gets a token and Valkey knows the connection as the identity
    await store.ping()
    whoami = await store.client.acl_whoami()
    assert token.username
    assert (whoami.decode() if isinstance(whoami, bytes) else whoami) == token.username


async def test_open_connections_sign_in_again_with_the_renewed_token(
    entra_store: Any, admin: valkey.Valkey, issuer: TokenIssuer, clock: Clock
) -> None:
    store, token = entra_store
    # Given a store with an open connection, signed in with the first token
    await store.ping()
    connection = await store.client.client_id()
    # When renewal comes due, the identity gets a new token, and Valkey takes only the new one
    clock.now = renewal_time(float(issuer.expires_on), 0.5)
    old, new = rotate(admin, issuer)
    await store.ping()  # starts the renewal in the background; this command still uses the old token
    for _ in range(100):
        if token.reveal() == new:
            break
        await asyncio.sleep(0.01)
    assert token.reveal() == new
    before = auth_calls(admin)
    # Then the next command goes out on the same connection, after an AUTH with the new token
    assert await store.client.client_id() == connection
    assert auth_calls(admin) == before + 1
    # And a connection opened from now on signs in with the new token too (Valkey refuses the old one)
    admin.client_kill_filter(_id=connection)
    await asyncio.sleep(0.05)
    await store.ping()
    assert await store.client.client_id() != connection
    assert old != new


async def test_an_expired_token_is_renewed_before_the_next_command(
    entra_store: Any, admin: valkey.Valkey, issuer: TokenIssuer, clock: Clock
) -> None:
    store, token = entra_store
    await store.ping()
    connection = await store.client.client_id()
    # Given the token expired while the store sat idle, and Valkey takes only a new one
    rotate(admin, issuer)
    clock.now = float(issuer.expires_on)
    admin.client_kill_filter(_id=connection)
    await asyncio.sleep(0.05)
    # When the store is used, then it waits for the new token and connects with it on the first try
    await store.ping()
    assert token.reveal() == issuer.token


async def test_a_refused_token_fails_as_an_unreachable_store_without_showing_it(
    entra_store: Any, admin: valkey.Valkey, issuer: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = entra_store
    caplog.set_level(logging.DEBUG)
    # Given Valkey does not know the token the identity gets (no access policy for it)
    admin.execute_command("ACL", "SETUSER", issuer.oid, "resetpass", ">something-else")
    # When the store is used, then it fails the way an outage does, and the token shows nowhere
    with pytest.raises(StoreError) as raised:
        await store.ping()
    assert issuer.token not in str(raised.value)
    assert issuer.token not in caplog.text
