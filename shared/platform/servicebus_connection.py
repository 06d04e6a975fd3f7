"""Resolve a Service Bus ``connection`` setting the way the extension's client factory does.

The one Service Bus connection type: the host's trigger and the app's sender both resolve their
setting (``ServiceBusConnection``) here, so a setting that works for one works for the other.

For ``connection="X"`` the extension looks up ``AzureWebJobsX`` first, then ``X`` (each as
``ConnectionStrings:<name>`` and as an app setting). A non-blank value is a connection string; a
section (``X__fullyQualifiedNamespace``, ``X__credential``, ``X__clientId``...) is an identity-based
connection. .NET configuration keys are case-insensitive and ``__`` stands for ``:``, so both are
accepted here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CredentialKind = Literal["connection_string", "default", "managed_identity", "client_secret"]
_ENDPOINT = re.compile(r"(?:^|;)\s*Endpoint\s*=\s*(?:sb://)?([^;/]+)", re.IGNORECASE)


class ConnectionSettingError(ValueError):
    """A ``connection`` setting that is missing or cannot be used; the message names it."""


@dataclass(frozen=True)
class ServiceBusConnection:
    """How to reach a namespace; secrets stay out of ``repr`` and log lines."""

    #: The setting (or section) that was used, named in every error about this connection.
    setting: str
    kind: CredentialKind
    fully_qualified_namespace: str = ""
    client_id: str = ""
    tenant_id: str = ""
    connection_string: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)

    @classmethod
    def from_connection_string(
        cls, value: str, setting: str = "ServiceBusConnection"
    ) -> ServiceBusConnection:
        return cls(setting, "connection_string", connection_string=value)

    def credential(self) -> Any:
        """The async azure-identity credential for an identity-based connection (the caller closes it).

        As the Azure SDK's configuration-based factory: ``managedidentity`` (with ``clientId`` for a
        user-assigned identity), a client secret, else ``DefaultAzureCredential`` told the client id.
        """
        from azure.identity.aio import (
            ClientSecretCredential,
            DefaultAzureCredential,
            ManagedIdentityCredential,
        )

        if self.kind == "managed_identity":
            return ManagedIdentityCredential(client_id=self.client_id or None)
        if self.kind == "client_secret":
            return ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret)
        return DefaultAzureCredential(managed_identity_client_id=self.client_id or None)

    @property
    def namespace(self) -> str:
        """The namespace host name, for log lines (never the connection string)."""
        if self.fully_qualified_namespace:
            return self.fully_qualified_namespace
        match = _ENDPOINT.search(self.connection_string)
        return match.group(1) if match else "(namespace not in the connection string)"


def resolve_connection(environ: Mapping[str, str], name: str) -> ServiceBusConnection:
    """The connection ``name`` (a binding's ``connection``) refers to, or :class:`ConnectionSettingError`."""
    settings = _Settings(environ)
    for candidate in (f"AzureWebJobs{name}", name):
        value = settings.value(f"ConnectionStrings:{candidate}")
        if value is None:
            value = settings.value(candidate)
        if value is not None and value.strip():
            return ServiceBusConnection(candidate, "connection_string", connection_string=value.strip())
        section = settings.section(candidate)
        if section or value is not None:
            return _identity_connection(candidate, section)
    raise ConnectionSettingError(
        f"Service Bus account connection string '{name}' does not exist. Make sure that it is a defined "
        f"App Setting (a connection string in '{name}', or '{name}__fullyQualifiedNamespace' "
        "for an identity-based connection)."
    )


def _identity_connection(setting: str, section: Mapping[str, str]) -> ServiceBusConnection:
    namespace = section.get("fullyqualifiednamespace", "").strip()
    if not namespace:
        raise ConnectionSettingError(
            f"Connection '{setting}' should have a 'fullyQualifiedNamespace' property "
            f"('{setting}__fullyQualifiedNamespace') or be a string representing a connection string."
        )
    credential = section.get("credential", "").strip().lower()
    client_id = section.get("clientid", "").strip()
    tenant_id = section.get("tenantid", "").strip()
    secret = section.get("clientsecret", "").strip()
    # Same precedence as the Azure SDK's configuration-based credential factory.
    kind: CredentialKind
    if credential == "managedidentity":
        kind = "managed_identity"
    elif tenant_id and client_id and secret:
        kind = "client_secret"
    elif credential and credential != "default":
        raise ConnectionSettingError(
            f"{setting}__credential='{credential}' is not supported (use managedidentity)"
        )
    else:
        kind = "default"
    return ServiceBusConnection(
        setting,
        kind,
        fully_qualified_namespace=namespace,
        client_id=client_id,
        tenant_id=tenant_id,
        client_secret=secret if kind == "client_secret" else "",
    )


class _Settings:
    """The environment read as .NET configuration: case-insensitive, ``__`` and ``:`` alike."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._values = {key.replace("__", ":").lower(): value for key, value in environ.items()}

    def value(self, key: str) -> str | None:
        return self._values.get(key.lower())

    def section(self, key: str) -> dict[str, str]:
        prefix = key.lower() + ":"
        return {k[len(prefix) :]: v for k, v in self._values.items() if k.startswith(prefix)}
