"""Key Vault references (``@Microsoft.KeyVault(...)``) and reading the secrets they name.

An app setting whose value is a reference holds the secret's address, never the secret. The platform
resolves it before the app starts; our host (``local/host/keyvault.py``) and :mod:`shared.secrets.refresh`
resolve it themselves through :class:`SecretReader`. Parsing is pure (:func:`parse_reference`,
:func:`parse_secret_uri`); reading goes through azure-keyvault-secrets, one ``SecretClient`` per vault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shared.secrets import Secret

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport
    from azure.keyvault.secrets import SecretClient

#: The DNS suffixes of Key Vault in the public, China and US Government clouds.
VAULT_DNS_SUFFIXES = ("vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net")
#: ``VaultName=`` names a vault in the public cloud, as the platform reads it.
DEFAULT_VAULT_SUFFIX = "vault.azure.net"

_PREFIX = "@microsoft.keyvault("
# Key Vault's own naming rules: a vault is 3-24 letters, digits and single hyphens, starting with a
# letter and ending with a letter or digit; a secret 1-127 letters, digits and hyphens; a version 32 hex.
_VAULT_NAME = re.compile(r"(?=[A-Za-z0-9-]{3,24}\Z)[A-Za-z](?:-?[A-Za-z0-9])+")
_SECRET_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9A-Fa-f]{32}")
_KEYS = {
    "secreturi": "SecretUri",
    "vaultname": "VaultName",
    "secretname": "SecretName",
    "secretversion": "SecretVersion",
}


# Plain exceptions rather than tasklane's hierarchy: this module belongs to the platform both the app
# and the host share. Callers catch these two by name (shared.pipeline.settings makes the first a
# ConfigError).
class KeyVaultReferenceError(ValueError):
    """A value that starts like a Key Vault reference but is not a valid one; the message says why."""


class SecretReadError(Exception):
    """A secret could not be read; ``reason`` says why (never the value, which was never read)."""

    def __init__(self, reference: SecretReference, reason: str) -> None:
        super().__init__(f"{reference}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclass(frozen=True)
class SecretReference:
    """Where a secret lives: its vault's URL, its name and, when pinned, its version."""

    vault_url: str
    name: str
    version: str | None = None

    @property
    def secret_uri(self) -> str:
        """The secret's data-plane URI, as ``SecretUri=`` writes it."""
        return f"{self.vault_url}/secrets/{self.name}" + (f"/{self.version}" if self.version else "")

    def __str__(self) -> str:
        return self.secret_uri


def is_reference(value: str) -> bool:
    """Whether ``value`` is meant as a Key Vault reference (valid or not)."""
    return value.lstrip()[: len(_PREFIX)].lower() == _PREFIX


def parse_reference(value: str) -> SecretReference | None:
    """The secret ``value`` refers to; ``None`` when ``value`` is not a reference at all.

    Both forms the platform documents are read: ``@Microsoft.KeyVault(SecretUri=<uri>)`` and
    ``@Microsoft.KeyVault(VaultName=<vault>;SecretName=<name>[;SecretVersion=<version>])``. Key names
    are read without regard to case. A malformed reference raises :class:`KeyVaultReferenceError`.
    """
    if not is_reference(value):
        return None
    text = value.strip()
    if not text.endswith(")"):
        raise KeyVaultReferenceError("a Key Vault reference ends with ')'")
    pairs = _pairs(text[len(_PREFIX) : -1])
    if "secreturi" in pairs:
        others = sorted(_KEYS[key] for key in pairs if key != "secreturi")
        if others:
            raise KeyVaultReferenceError(f"SecretUri cannot be combined with {', '.join(others)}")
        return parse_secret_uri(pairs["secreturi"])
    for required in ("vaultname", "secretname"):
        if not pairs.get(required):
            raise KeyVaultReferenceError(f"{_KEYS[required]} is missing (or use SecretUri=...)")
    vault = _checked(pairs["vaultname"], _VAULT_NAME, "VaultName", "3-24 letters, digits and hyphens")
    return SecretReference(
        f"https://{vault.lower()}.{DEFAULT_VAULT_SUFFIX}",
        _checked(pairs["secretname"], _SECRET_NAME, "SecretName", "1-127 letters, digits and hyphens"),
        _version(pairs.get("secretversion")),
    )


def parse_secret_uri(uri: str) -> SecretReference:
    """Read ``https://<vault>.vault.azure.net/secrets/<name>[/<version>][/]``."""
    try:
        parts = urlsplit(uri.strip())
        port = parts.port
    except ValueError as exc:  # an unbalanced '[' or a port that is not a number
        raise KeyVaultReferenceError(f"SecretUri '{uri}' is not a URI: {exc}") from None
    if parts.scheme.lower() != "https":
        raise KeyVaultReferenceError(f"SecretUri '{uri}' is not an https URI")
    if parts.query or parts.fragment or parts.username or parts.password or port not in (None, 443):
        raise KeyVaultReferenceError(f"SecretUri '{uri}' has parts a secret URI does not have")
    host = (parts.hostname or "").lower()
    vault, _, suffix = host.partition(".")
    if suffix not in VAULT_DNS_SUFFIXES or not _VAULT_NAME.fullmatch(vault):
        raise KeyVaultReferenceError(f"SecretUri '{uri}': '{host}' is not a Key Vault host")
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")
    if len(segments) not in (3, 4) or segments[0] or segments[1].lower() != "secrets":
        raise KeyVaultReferenceError(f"SecretUri '{uri}': expected /secrets/<name>[/<version>]")
    name = _checked(segments[2], _SECRET_NAME, "the secret name", "1-127 letters, digits and hyphens")
    version = _version(segments[3] if len(segments) == 4 else None)
    return SecretReference(f"https://{host}", name, version)


def _pairs(body: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for segment in body.split(";"):
        if not segment.strip():
            continue
        key, equals, found = segment.partition("=")
        name = key.strip().lower()
        if not equals or name not in _KEYS:
            raise KeyVaultReferenceError(
                f"'{key.strip()}' is not one of SecretUri, VaultName, SecretName, SecretVersion"
            )
        if name in pairs:
            raise KeyVaultReferenceError(f"{_KEYS[name]} appears twice")
        pairs[name] = found.strip()
    return pairs


def _checked(value: str, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not pattern.fullmatch(value):
        raise KeyVaultReferenceError(f"{what} '{value}' is not valid: {rule}")
    return value


def _version(value: str | None) -> str | None:
    if not value:
        return None
    return _checked(value, _VERSION, "the secret version", "32 hexadecimal digits")


class SecretReader:
    """Reads secrets with one ``SecretClient`` per vault, sharing one credential.

    ``credential`` defaults to azure-identity's ``DefaultAzureCredential`` (the managed identity in
    Azure, the developer's sign-in locally), made on first use; ``client_id`` picks a user-assigned
    identity. ``transport`` and ``retry_total`` go to each ``SecretClient``; tests pass a double.
    """

    def __init__(
        self,
        credential: TokenCredential | None = None,
        *,
        client_id: str | None = None,
        transport: HttpTransport[Any, Any] | None = None,
        retry_total: int = 2,
    ) -> None:
        self._credential = credential
        self._owns_credential = credential is None
        self._client_id = client_id
        self._options: dict[str, Any] = {"retry_total": retry_total}
        if transport is not None:
            self._options["transport"] = transport
        self._clients: dict[str, SecretClient] = {}

    def read(self, reference: SecretReference) -> Secret:
        """The secret's value (its latest version unless the reference pins one)."""
        from azure.core.exceptions import AzureError

        try:
            found = self._client(reference.vault_url).get_secret(reference.name, reference.version or "")
        except AzureError as exc:
            raise SecretReadError(reference, _reason(reference, exc)) from None
        if found.value is None:
            raise SecretReadError(reference, "the secret has no value")
        return Secret(found.value)

    def close(self) -> None:
        """Close every client, and the credential when this reader made it."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        if self._owns_credential and self._credential is not None:
            close = getattr(self._credential, "close", None)
            if close is not None:
                close()
            self._credential = None

    def _client(self, vault_url: str) -> SecretClient:
        client = self._clients.get(vault_url)
        if client is None:
            # Imported here: azure-identity alone costs ~150 ms at import, and most hosts never read a secret.
            from azure.keyvault.secrets import SecretClient

            client = SecretClient(vault_url, self._token_credential(), **self._options)
            self._clients[vault_url] = client
        return client

    def _token_credential(self) -> TokenCredential:
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential(managed_identity_client_id=self._client_id)
        return self._credential


def _reason(reference: SecretReference, exc: Exception) -> str:
    """Why a read failed, in a line; Key Vault's own messages never quote a secret value."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    host = urlsplit(reference.vault_url).hostname
    if isinstance(exc, ResourceNotFoundError):
        version = f" version {reference.version}" if reference.version else ""
        return f"not found: {host} has no secret '{reference.name}'{version} (404)"
    if isinstance(exc, ServiceRequestError):
        return f"{host} is unreachable: {_first_line(exc)}"
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        return f"no credential could get a token for Key Vault: {_first_line(exc)}"
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        code = _error_code(exc) or "Forbidden"
        return (
            f"access denied (403 {code}): the identity needs the Key Vault Secrets User role on {host}"
            " (or a 'get' access policy on a vault without RBAC)"
        )
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return f"Key Vault answered {exc.status_code} {_error_code(exc) or exc.reason}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _error_code(exc: Any) -> str | None:
    """Key Vault's most specific error code: ``innererror.code`` (``ForbiddenByRbac``), else ``code``."""
    error = exc.error
    if error is None:
        return None
    inner = error.innererror.get("code") if isinstance(error.innererror, dict) else None
    return str(inner or error.code or "") or None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
