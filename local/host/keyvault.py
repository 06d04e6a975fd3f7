"""Key Vault references in app settings, resolved when the host starts, as the platform does in Azure.

A setting whose value is ``@Microsoft.KeyVault(...)`` gets the secret's value before the app is
indexed. One that cannot be resolved keeps its reference text (Azure does the same) and the host
warns, naming the setting and the reason; no value is ever printed. Secrets are read with
azure-identity's ``DefaultAzureCredential`` (``az login`` locally) and one client per vault.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass

from shared.platform.keyvault import (
    KeyVaultReferenceError,
    SecretReader,
    SecretReadError,
    SecretReference,
    parse_reference,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unresolved:
    """A setting that still holds its reference, and why."""

    setting: str
    reason: str


def resolve_references(
    environ: MutableMapping[str, str], reader: SecretReader | None = None
) -> list[Unresolved]:
    """Replace each Key Vault reference in ``environ`` with its secret; the settings that failed.

    ``reader`` reads the secrets (a default one is made, and closed, only when a reference exists).
    """
    references: dict[str, SecretReference] = {}
    failures: list[Unresolved] = []
    for name, value in environ.items():
        try:
            reference = parse_reference(value)
        except KeyVaultReferenceError as exc:
            failures.append(Unresolved(name, f"not a valid Key Vault reference: {exc}"))
            continue
        if reference is not None:
            references[name] = reference
    if references:
        failures += _read_all(references, environ, reader)
    for failure in sorted(failures, key=lambda f: f.setting):
        log.warning(
            "KEY VAULT REFERENCE NOT RESOLVED: setting %s keeps its @Microsoft.KeyVault(...) text, as in"
            " Azure. Reason: %s",
            failure.setting,
            failure.reason,
        )
    return failures


def _read_all(
    references: dict[str, SecretReference], environ: MutableMapping[str, str], reader: SecretReader | None
) -> list[Unresolved]:
    owned = reader is None
    active = reader or SecretReader()
    failures: list[Unresolved] = []
    try:
        for name, reference in references.items():
            try:
                environ[name] = active.read(reference).reveal()
            except SecretReadError as exc:
                failures.append(Unresolved(name, exc.reason))
                continue
            log.info("Setting %s: resolved from Key Vault (%s)", name, reference)
    finally:
        if owned:
            active.close()
    return failures
