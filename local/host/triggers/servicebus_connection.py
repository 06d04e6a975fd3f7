"""Resolve a Service Bus ``connection`` setting the way the extension's client factory does.

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
from typing import Literal

from local.host.errors import HostError

CredentialKind = Literal["connection_string", "default", "managed_identity", "client_secret"]
_ENDPOINT = re.compile(r"(?:^|;)\s*Endpoint\s*=\s*(?:sb://)?([^;/]+)", re.IGNORECASE)


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

    @property
    def namespace(self) -> str:
        """The namespace host name, for log lines (never the connection string)."""
        if self.fully_qualified_namespace:
            return self.fully_qualified_namespace
        match = _ENDPOINT.search(self.connection_string)
        return match.group(1) if match else "(namespace not in the connection string)"


def resolve_connection(environ: Mapping[str, str], name: str) -> ServiceBusConnection:
    """The connection ``name`` (a binding's ``connection``) refers to, or a :class:`HostError`."""
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
    raise HostError(
        f"Service Bus account connection string '{name}' does not exist. Make sure that it is a defined "
        f"App Setting (a connection string in '{name}', or '{name}__fullyQualifiedNamespace' "
        "for an identity-based connection)."
    )


def _identity_connection(setting: str, section: Mapping[str, str]) -> ServiceBusConnection:
    namespace = section.get("fullyqualifiednamespace", "").strip()
    if not namespace:
        raise HostError(
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
        raise HostError(f"{setting}__credential='{credential}' is not supported (use managedidentity)")
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
