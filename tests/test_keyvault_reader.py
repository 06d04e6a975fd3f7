"""Reading secrets through the real ``SecretClient``, against a vault double at its HTTP transport."""

from __future__ import annotations

import logging

import pytest

from shared.platform.keyvault import SecretReader, SecretReadError, SecretReference
from tests.test_keyvault_double import FakeVault, StaticTokenCredential, VaultTransport

VALUE = "s3cr3t-Valkey-pa55word"


def reader_for(*vaults: FakeVault) -> tuple[SecretReader, StaticTokenCredential]:
    credential = StaticTokenCredential()
    return SecretReader(credential, transport=VaultTransport(*vaults), retry_total=0), credential


def test_a_secret_is_read_with_a_token_for_the_vault() -> None:
    # Given a vault holding the secret
    vault = FakeVault()
    vault.set_secret("valkey-password", VALUE)
    reader, credential = reader_for(vault)
    # When it is read by name
    secret = reader.read(SecretReference(vault.url, "valkey-password"))
    # Then the value comes back masked, after the challenge named the vault's token scope
    assert secret.reveal() == VALUE
    assert VALUE not in repr(secret)
    assert ("https://vault.azure.net/.default",) in credential.scopes


def test_a_pinned_version_is_read_rather_than_the_latest() -> None:
    # Given a secret rotated once
    vault = FakeVault()
    first = vault.set_secret("valkey-password", "old-password")
    vault.set_secret("valkey-password", VALUE)
    reader, _ = reader_for(vault)
    # When the reference pins the first version
    secret = reader.read(SecretReference(vault.url, "valkey-password", first))
    # Then that version answers
    assert secret.reveal() == "old-password"


def test_a_missing_secret_says_not_found_and_names_it() -> None:
    # Given a vault without the secret
    vault = FakeVault()
    reader, _ = reader_for(vault)
    # When it is read
    with pytest.raises(SecretReadError) as raised:
        reader.read(SecretReference(vault.url, "signoz-otlp-headers"))
    # Then the reason says 404 and which secret
    assert "not found" in raised.value.reason
    assert "signoz-otlp-headers" in raised.value.reason
    assert "(404)" in raised.value.reason


def test_access_denied_names_the_role_the_identity_needs() -> None:
    # Given a vault whose RBAC refuses the caller
    vault = FakeVault(denied=True)
    vault.set_secret("valkey-password", VALUE)
    reader, _ = reader_for(vault)
    # When the secret is read
    with pytest.raises(SecretReadError) as raised:
        reader.read(SecretReference(vault.url, "valkey-password"))
    # Then the reason gives the status, Key Vault's code and the fix, in one line
    reason = raised.value.reason
    assert "403 ForbiddenByRbac" in reason
    assert "Key Vault Secrets User" in reason
    assert "\n" not in reason


def test_an_unreachable_vault_is_named_in_the_reason() -> None:
    # Given a vault that cannot be reached (DNS fails)
    vault = FakeVault(reachable=False)
    reader, _ = reader_for(vault)
    # When a secret is read
    with pytest.raises(SecretReadError) as raised:
        reader.read(SecretReference(vault.url, "valkey-password"))
    # Then the reason says the host is unreachable
    assert f"{vault.host} is unreachable" in raised.value.reason


def test_one_client_serves_every_secret_of_a_vault_and_another_vault_gets_its_own() -> None:
    # Given two vaults
    first, second = FakeVault(host="kv-one.vault.azure.net"), FakeVault(host="kv-two.vault.azure.net")
    first.set_secret("a", "1")
    first.set_secret("b", "2")
    second.set_secret("c", "3")
    reader, _ = reader_for(first, second)
    # When secrets of both are read
    values = [
        reader.read(SecretReference(v.url, n)).reveal()
        for v, n in [(first, "a"), (first, "b"), (second, "c")]
    ]
    # Then each vault has one client, which answered the challenge only once
    assert values == ["1", "2", "3"]
    assert len(reader._clients) == 2
    unauthenticated = [r for r in first.requests if "Authorization" not in r.headers]
    assert len(unauthenticated) <= 1


def test_no_secret_value_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    # Given every logger at DEBUG (the SDK's HTTP logging included)
    caplog.set_level(logging.DEBUG)
    vault = FakeVault()
    vault.set_secret("valkey-password", VALUE)
    reader, _ = reader_for(vault)
    # When the secret is read
    reader.read(SecretReference(vault.url, "valkey-password"))
    # Then its value appears in no log record
    assert caplog.records
    assert VALUE not in caplog.text
