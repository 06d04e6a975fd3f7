"""Key Vault for real: what the transport double in ``tests/test_keyvault_double.py`` stands in for.

Runs when ``AZURE_KEY_VAULT_URL`` is set (``azd env get-value AZURE_KEY_VAULT_URL`` after ``azd up``),
signed in the way ``DefaultAzureCredential`` finds (``az login`` locally; the caller needs Key Vault
Secrets User). ``AZURE_KEY_VAULT_SECRET`` names a secret that exists (default
``signoz-otlp-headers``, which the Bicep creates when a SigNoz key is given). Values are only ever
checked for being non-empty, never shown.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from local.host.keyvault import resolve_references
from shared.platform.keyvault import SecretReader, SecretReadError, SecretReference

pytestmark = pytest.mark.contract


@pytest.fixture
def vault_url() -> str:
    url = os.environ.get("AZURE_KEY_VAULT_URL", "").strip().rstrip("/")
    if not url:
        pytest.skip(
            "no Key Vault: set AZURE_KEY_VAULT_URL (and AZURE_KEY_VAULT_SECRET, default signoz-otlp-headers)"
        )
    return url


@pytest.fixture
def secret_name() -> str:
    return os.environ.get("AZURE_KEY_VAULT_SECRET", "signoz-otlp-headers")


@pytest.fixture
def reader() -> Iterator[SecretReader]:
    found = SecretReader()
    yield found
    found.close()


def test_an_existing_secret_is_read(vault_url: str, secret_name: str, reader: SecretReader) -> None:
    secret = reader.read(SecretReference(vault_url, secret_name))
    assert secret.reveal()


def test_a_missing_secret_is_reported_as_not_found(vault_url: str, reader: SecretReader) -> None:
    name = f"tasklane-contract-{uuid.uuid4().hex[:12]}"
    with pytest.raises(SecretReadError) as raised:
        reader.read(SecretReference(vault_url, name))
    assert "not found" in raised.value.reason


def test_both_reference_forms_resolve_and_no_value_is_logged(
    vault_url: str, secret_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    vault = (urlsplit(vault_url).hostname or "").split(".")[0]
    environ = {
        "BY_URI": f"@Microsoft.KeyVault(SecretUri={vault_url}/secrets/{secret_name}/)",
        "BY_NAME": f"@Microsoft.KeyVault(VaultName={vault};SecretName={secret_name})",
    }
    caplog.set_level(logging.DEBUG)
    assert resolve_references(environ) == []
    assert environ["BY_URI"] == environ["BY_NAME"]
    assert not environ["BY_URI"].startswith("@Microsoft.KeyVault(")
    assert environ["BY_URI"] not in caplog.text
