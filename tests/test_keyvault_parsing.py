"""Reading ``@Microsoft.KeyVault(...)`` references: a table of the documented forms, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.platform.keyvault import (
    KeyVaultReferenceError,
    SecretReference,
    parse_reference,
    parse_secret_uri,
)

VERSION = "ec96f02080254f109c51a1f14cdb1931"
KV = "https://myvault.vault.azure.net"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # The two forms the App Service documentation gives, with and without a version.
        (f"@Microsoft.KeyVault(SecretUri={KV}/secrets/mysecret/)", SecretReference(KV, "mysecret")),
        (f"@Microsoft.KeyVault(SecretUri={KV}/secrets/mysecret)", SecretReference(KV, "mysecret")),
        (
            f"@Microsoft.KeyVault(SecretUri={KV}/secrets/mysecret/{VERSION})",
            SecretReference(KV, "mysecret", VERSION),
        ),
        (
            f"@Microsoft.KeyVault(SecretUri={KV}/secrets/mysecret/{VERSION}/)",
            SecretReference(KV, "mysecret", VERSION),
        ),
        ("@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret)", SecretReference(KV, "mysecret")),
        (
            f"@Microsoft.KeyVault(VaultName=myvault;SecretName=mysecret;SecretVersion={VERSION})",
            SecretReference(KV, "mysecret", VERSION),
        ),
        # Lenient where nothing is ambiguous: spacing, key case, order, a trailing ';', the vault's case.
        (
            "  @Microsoft.KeyVault( SecretName = mysecret ; VaultName = MyVault ; )  ",
            SecretReference(KV, "mysecret"),
        ),
        ("@microsoft.keyvault(vaultname=myvault;secretname=mysecret)", SecretReference(KV, "mysecret")),
        (
            "@Microsoft.KeyVault(SecretUri=https://MyVault.Vault.Azure.Net:443/secrets/mysecret)",
            SecretReference(KV, "mysecret"),
        ),
        # Sovereign clouds keep their own DNS suffix.
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-1.vault.azure.cn/secrets/a-b)",
            SecretReference("https://kv-1.vault.azure.cn", "a-b"),
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://kv-1.vault.usgovcloudapi.net/secrets/a)",
            SecretReference("https://kv-1.vault.usgovcloudapi.net", "a"),
        ),
        # Not references at all: plain values are left alone.
        ("amqp://guest:guest@127.0.0.1:5672/", None),
        ("", None),
        ("Microsoft.KeyVault(SecretUri=x)", None),
        ("password with @Microsoft.KeyVault( inside", None),
    ],
)
def test_documented_forms_are_read(value: str, expected: SecretReference | None) -> None:
    assert parse_reference(value) == expected


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/a", "ends with ')'"),
        ("@Microsoft.KeyVault()", "VaultName is missing"),
        ("@Microsoft.KeyVault(VaultName=myvault)", "SecretName is missing"),
        ("@Microsoft.KeyVault(SecretName=a)", "VaultName is missing"),
        ("@Microsoft.KeyVault(VaultName=myvault;SecretName=a;Version=1)", "'Version' is not one of"),
        ("@Microsoft.KeyVault(VaultName=myvault;VaultName=other;SecretName=a)", "VaultName appears twice"),
        (
            "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/a;SecretName=a)",
            "cannot be combined",
        ),
        ("@Microsoft.KeyVault(VaultName=ab;SecretName=a)", "VaultName 'ab' is not valid"),
        ("@Microsoft.KeyVault(VaultName=1vault;SecretName=a)", "VaultName '1vault' is not valid"),
        ("@Microsoft.KeyVault(VaultName=my--vault;SecretName=a)", "VaultName 'my--vault' is not valid"),
        ("@Microsoft.KeyVault(VaultName=myvault;SecretName=a_b)", "SecretName 'a_b' is not valid"),
        ("@Microsoft.KeyVault(VaultName=myvault;SecretName=a;SecretVersion=latest)", "32 hexadecimal"),
        ("@Microsoft.KeyVault(SecretUri=http://myvault.vault.azure.net/secrets/a)", "not an https URI"),
        ("@Microsoft.KeyVault(SecretUri=https://myvault.example.com/secrets/a)", "not a Key Vault host"),
        ("@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/keys/a)", "expected /secrets/"),
        (
            "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/a/b/c)",
            "expected /secrets/",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/a?x=1)",
            "parts a secret URI",
        ),
        (
            "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net:8443/secrets/a)",
            "parts a secret URI",
        ),
    ],
)
def test_malformed_references_say_what_is_wrong(value: str, complaint: str) -> None:
    with pytest.raises(KeyVaultReferenceError) as raised:
        parse_reference(value)
    assert complaint in str(raised.value)


def test_a_secret_uri_setting_is_read_without_the_reference_wrapper() -> None:
    assert parse_secret_uri(f"{KV}/secrets/valkey-password") == SecretReference(KV, "valkey-password")


# -- properties ---------------------------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
vault_names = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text(_ALNUM + "-", min_size=1, max_size=22),
    st.sampled_from(_ALNUM),
).filter(lambda name: "--" not in name)
secret_names = st.text(_ALNUM + "-", min_size=1, max_size=127)
versions = st.none() | st.text("0123456789abcdef", min_size=32, max_size=32)


@st.composite
def references(draw: st.DrawFn) -> tuple[str, SecretReference]:
    """A reference written in one of the documented forms, and what it must parse to."""
    vault, name, version = draw(vault_names), draw(secret_names), draw(versions)
    expected = SecretReference(f"https://{vault.lower()}.vault.azure.net", name, version)
    if draw(st.booleans()):
        slash = "/" if draw(st.booleans()) else ""
        text = f"@Microsoft.KeyVault(SecretUri={expected.secret_uri}{slash})"
    else:
        pairs = [f"VaultName={vault}", f"SecretName={name}"] + (
            [f"SecretVersion={version}"] if version else []
        )
        text = "@Microsoft.KeyVault(" + ";".join(draw(st.permutations(pairs))) + ")"
    return text, expected


@given(references())
def test_every_well_formed_reference_reads_back_what_it_names(case: tuple[str, SecretReference]) -> None:
    text, expected = case
    assert parse_reference(text) == expected


@given(st.text())
def test_text_that_is_not_a_reference_is_never_taken_for_one(text: str) -> None:
    if not text.lstrip().lower().startswith("@microsoft.keyvault("):
        assert parse_reference(text) is None


@given(st.text())
def test_anything_after_the_prefix_parses_or_says_why_never_crashes(tail: str) -> None:
    try:
        found = parse_reference("@Microsoft.KeyVault(" + tail)
    except KeyVaultReferenceError as exc:
        complaint = str(exc)
        assert complaint, "a refusal says why"
    else:
        assert found is not None
        assert found.vault_url.startswith("https://")
