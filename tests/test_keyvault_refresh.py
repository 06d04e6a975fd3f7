"""A rotated secret is picked up without a redeploy: re-read on an interval, and when Valkey refuses it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import valkey

from local import services
from shared.errors import ConfigError, StoreError
from shared.pipeline.settings import Settings
from shared.platform.keyvault import SecretReader, SecretReference
from shared.secrets import Secret
from shared.secrets.refresh import RefreshingSecret
from shared.store.store import Store
from tests.conftest import require_binary
from tests.hosting import free_port
from tests.test_keyvault_double import FakeVault, StaticTokenCredential, VaultTransport

OLD = "old-Valkey-pa55word"
NEW = "rotated-Valkey-pa55word"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def following(
    vault: FakeVault, *, initial: str | None = OLD, clock: Callable[[], float] = time.monotonic
) -> RefreshingSecret:
    reference = SecretReference(vault.url, "valkey-password")
    reader = SecretReader(StaticTokenCredential(), transport=VaultTransport(vault), retry_total=0)
    return RefreshingSecret(
        str(reference),
        lambda: reader.read(reference),
        initial=Secret(initial) if initial else None,
        interval=300,
        clock=clock,
    )


@pytest.fixture
def vault() -> FakeVault:
    found = FakeVault()
    found.set_secret("valkey-password", OLD)
    return found


async def test_a_rotated_secret_is_read_once_the_interval_has_passed(vault: FakeVault) -> None:
    # Given a secret read at start, then rotated in the vault
    clock = Clock()
    secret = following(vault, clock=clock)
    vault.set_secret("valkey-password", NEW)
    # When less than the interval has passed, it is not due; once it has, it is
    clock.now += 299
    assert not secret.due
    clock.now += 1
    assert secret.due
    # Then a refresh picks up the new value, and a second one at once does not read again
    assert await secret.refresh() is True
    assert secret.reveal() == NEW
    reads = len(vault.requests)
    assert await secret.refresh() is False
    assert len(vault.requests) == reads


async def test_refresh_soon_reads_in_the_background_only_when_due(vault: FakeVault) -> None:
    # Given a rotated secret whose interval has passed
    clock = Clock()
    secret = following(vault, clock=clock)
    vault.set_secret("valkey-password", NEW)
    secret.refresh_soon()
    assert secret.reveal() == OLD  # not due yet: nothing started
    clock.now += 300
    # When a refresh is asked for "soon"
    secret.refresh_soon()
    # Then the caller did not wait, and the value follows shortly after
    assert secret.reveal() == OLD
    for _ in range(200):
        if secret.reveal() == NEW:
            break
        await asyncio.sleep(0.01)
    assert secret.reveal() == NEW


async def test_a_failed_read_keeps_the_last_value_and_says_why(
    vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a secret whose vault stops answering
    clock = Clock()
    secret = following(vault, clock=clock)
    vault.reachable = False
    clock.now += 300
    # When it is refreshed
    with caplog.at_level(logging.WARNING, logger="shared.secrets.refresh"):
        changed = await secret.refresh()
    # Then the working value stays, and the warning names the secret and the reason, not the value
    assert changed is False
    assert secret.reveal() == OLD
    assert "valkey-password" in caplog.text
    assert "unreachable" in caplog.text
    assert OLD not in caplog.text


def test_settings_follow_the_secret_uri_and_mask_the_value() -> None:
    # Given app settings as the Bicep sets them (the platform resolved VALKEY_PASSWORD already)
    environ = {
        "TASKLANE_PROFILE": "local",
        "RabbitMQConnection": "amqp://guest:guest@127.0.0.1:5672/",
        "VALKEY_PASSWORD": OLD,
        "VALKEY_PASSWORD_SECRET_URI": "https://tasklane-kv.vault.azure.net/secrets/valkey-password",
        "SECRET_REFRESH_SECONDS": "120",
    }
    # When settings are read
    settings = Settings.from_environ(environ)
    # Then the password follows Key Vault, starts from the resolved value and never shows it
    password = settings.valkey_password
    assert isinstance(password, RefreshingSecret)
    assert password.reveal() == OLD
    assert password.label == "https://tasklane-kv.vault.azure.net/secrets/valkey-password"
    assert OLD not in repr(settings)
    assert OLD not in str(password)


def test_an_unresolved_reference_is_not_taken_for_the_password() -> None:
    # Given the platform could not resolve VALKEY_PASSWORD (it keeps the reference text)
    environ = {
        "TASKLANE_PROFILE": "local",
        "RabbitMQConnection": "amqp://guest:guest@127.0.0.1:5672/",
        "VALKEY_PASSWORD": "@Microsoft.KeyVault(SecretUri=https://tasklane-kv.vault.azure.net/secrets/x)",
        "VALKEY_PASSWORD_SECRET_URI": "https://tasklane-kv.vault.azure.net/secrets/valkey-password",
    }
    # When settings are read, then there is no value yet: it is read from the vault before first use
    password = Settings.from_environ(environ).valkey_password
    assert isinstance(password, RefreshingSecret)
    assert not password
    assert password.due


def test_a_bad_secret_uri_names_the_setting() -> None:
    environ = {
        "TASKLANE_PROFILE": "local",
        "RabbitMQConnection": "amqp://guest:guest@127.0.0.1:5672/",
        "VALKEY_PASSWORD_SECRET_URI": "@Microsoft.KeyVault(VaultName=kv;SecretName=x)",
    }
    with pytest.raises(ConfigError, match="VALKEY_PASSWORD_SECRET_URI"):
        Settings.from_environ(environ)


# -- Valkey reconnects with the rotated password ------------------------------------------------------


@pytest.fixture
def guarded_valkey(tmp_path: Path) -> Iterator[tuple[str, valkey.Valkey]]:
    """A Valkey of our own on a spare port, requiring the password OLD; its URL and an admin client."""
    require_binary("valkey-server")
    ports = {"valkey": free_port()}
    services.ensure(["valkey"], ports=ports, state_dir=tmp_path, report=lambda line: None)
    admin = valkey.Valkey(port=ports["valkey"])
    admin.config_set("requirepass", OLD)
    admin.auth(OLD)
    try:
        yield f"valkey://127.0.0.1:{ports['valkey']}/0", admin
    finally:
        admin.close()
        services.down(["valkey"], ports=ports, state_dir=tmp_path, report=lambda line: None)


def rotate(admin: valkey.Valkey, password: str) -> None:
    """Change the password and drop every other connection, as a restart or failover would."""
    admin.config_set("requirepass", password)
    admin.client_kill_filter(_type="normal", skipme=True)


async def test_the_store_reconnects_with_the_password_rotated_in_key_vault(
    vault: FakeVault,
    guarded_valkey: tuple[str, valkey.Valkey],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, admin = guarded_valkey
    caplog.set_level(logging.DEBUG)
    # Given a store authenticated with the password Key Vault held at start
    store = Store(url, following(vault))
    try:
        await store.ping()
        # When the password is rotated in Key Vault and in Valkey, and Valkey drops the connections
        vault.set_secret("valkey-password", NEW)
        rotate(admin, NEW)
        await asyncio.sleep(0.1)  # a running app's event loop sees the closed sockets before the next use
        # Then the next command succeeds: refused with the old one, the store re-read the vault
        await store.ping()
        assert "Valkey refused the password" in caplog.text
    finally:
        await store.close()
    # And neither password reached the log or the console
    captured = capsys.readouterr()
    for value in (OLD, NEW):
        assert value not in caplog.text
        assert value not in captured.out + captured.err


async def test_a_refused_password_the_vault_still_holds_fails_without_showing_it(
    vault: FakeVault, guarded_valkey: tuple[str, valkey.Valkey]
) -> None:
    url, admin = guarded_valkey
    # Given a store whose password Valkey no longer accepts, while Key Vault still holds the old one
    store = Store(url, following(vault))
    try:
        await store.ping()
        rotate(admin, NEW)
        await asyncio.sleep(0.1)
        # When it is used, then it fails as Valkey being unreachable, without either password in the error
        with pytest.raises(StoreError) as raised:
            await store.ping()
        assert OLD not in str(raised.value)
        assert NEW not in str(raised.value)
    finally:
        await store.close()
