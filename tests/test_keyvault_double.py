"""A Key Vault that answers at the HTTP transport, for the real ``SecretClient``, and its own checks.

``VaultTransport`` is azure-core's own ``RequestsTransport`` with only the socket replaced: a
``requests`` adapter answers as the Key Vault data plane does, so the client keeps its whole pipeline
(challenge-based bearer authentication, retry policy, error mapping, JSON decoding). The bodies have
the shape the service returns (REST API 7.x ``SecretBundle`` and ``KeyVaultError``): a 401 challenge
for a request without a token, the secret bundle, ``SecretNotFound`` (404), ``ForbiddenByRbac`` (403).
An unreachable vault raises ``requests``' ``ConnectionError``, which azure-core turns into
``ServiceRequestError`` as it does for a real DNS or TCP failure.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TOKEN = "test-access-token"
_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


class StaticTokenCredential:
    """A ``TokenCredential`` that always hands out the same token and records the scopes asked for."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class FakeVault:
    """One vault's secrets (name -> versions, oldest first) and how it treats callers."""

    host: str = "tasklane-kv.vault.azure.net"
    secrets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    denied: bool = False
    reachable: bool = True
    requests: list[requests.PreparedRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def set_secret(self, name: str, value: str) -> str:
        """Store a new version (it becomes the latest); its version id."""
        version = uuid.uuid4().hex
        self.secrets.setdefault(name, []).append((version, value))
        return version

    def answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and headers for one request, as the service would send them."""
        self.requests.append(request)
        if not self.reachable:
            raise requests.exceptions.ConnectionError(
                f"HTTPSConnectionPool(host='{self.host}', port=443): Max retries exceeded"
                " (Caused by NameResolutionError: Failed to resolve)"
            )
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                'resource="https://vault.azure.net"'
            )
            error = {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
            return 401, {"error": error}, {"WWW-Authenticate": challenge}
        if self.denied:
            return 403, {"error": _forbidden(self.host)}, {}
        parts = [p for p in urlsplit(request.url or "").path.split("/") if p]
        name, version = parts[1], parts[2] if len(parts) > 2 else None
        for found_version, value in reversed(self.secrets.get(name, [])):
            if version in (None, found_version):
                return 200, self._bundle(name, found_version, value), {}
        message = (
            f"A secret with (name/id) {name}{'/' + version if version else ''} was not found in this key"
            " vault."
            " If you recently deleted this secret you may be able to recover it using the correct recovery"
            " command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        )
        return 404, {"error": {"code": "SecretNotFound", "message": message}}, {}

    def _bundle(self, name: str, version: str, value: str) -> dict[str, Any]:
        return {
            "value": value,
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": 1767225600,
                "updated": 1767225600,
                "recoveryLevel": "Recoverable",
                "recoverableDays": 90,
            },
            "tags": {},
        }


def _forbidden(host: str) -> dict[str, Any]:
    vault = host.split(".")[0]
    message = (
        "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or"
        " role definitions were changed recently, please observe propagation time.\r\nCaller:"
        " appid=00000000-0000-0000-0000-000000000001;oid=00000000-0000-0000-0000-000000000002\r\nAction:"
        " 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource:"
        f" '/subscriptions/0000/resourcegroups/rg/providers/microsoft.keyvault/vaults/{vault}/secrets/x'\r\n"
        "Assignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\n"
        f"Vault: {vault};location=westeurope\r\n"
    )
    return {"code": "Forbidden", "message": message, "innererror": {"code": "ForbiddenByRbac"}}


class _VaultAdapter(BaseAdapter):
    def __init__(self, vaults: dict[str, FakeVault]) -> None:
        super().__init__()
        self.vaults = vaults

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        host = urlsplit(request.url or "").hostname or ""
        status, body, headers = self.vaults[host].answer(request)
        content = json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = _REASONS[status]
        response.headers = CaseInsensitiveDict(
            {
                "Content-Type": "application/json; charset=utf-8",
                "x-ms-keyvault-service-version": "1.9",
                **headers,
            }
        )
        response._content = content
        response.raw = io.BytesIO(content)
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


class VaultTransport(RequestsTransport):
    """azure-core's requests transport, answered by fake vaults instead of the network."""

    def __init__(self, *vaults: FakeVault) -> None:
        session = requests.Session()
        session.mount("https://", _VaultAdapter({vault.host: vault for vault in vaults}))
        super().__init__(session=session, session_owner=False)


# -- the double behaves as the service does ---------------------------------------------------------


def test_a_request_without_a_token_gets_the_bearer_challenge() -> None:
    # Given a vault
    vault = FakeVault()
    session = requests.Session()
    session.mount("https://", _VaultAdapter({vault.host: vault}))
    # When a request arrives without a token
    response = session.get(f"{vault.url}/secrets/x?api-version=7.6")
    # Then it is refused with the challenge that names the tenant and the resource to ask a token for
    assert response.status_code == 401
    assert f"login.microsoftonline.com/{TENANT}" in response.headers["WWW-Authenticate"]
    assert 'resource="https://vault.azure.net"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(("version", "expected"), [(None, "second"), ("first", "first")])
def test_the_latest_version_answers_unless_one_is_named(version: str | None, expected: str) -> None:
    # Given a secret with two versions
    vault = FakeVault()
    versions = {"first": vault.set_secret("s", "first"), "second": vault.set_secret("s", "second")}
    session = requests.Session()
    session.mount("https://", _VaultAdapter({vault.host: vault}))
    path = "/secrets/s" + (f"/{versions[version]}" if version else "/")
    # When it is read with a token
    response = session.get(f"{vault.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    # Then the bundle carries that version's value and id
    assert response.json()["value"] == expected
    assert response.json()["id"].endswith(versions[expected])
