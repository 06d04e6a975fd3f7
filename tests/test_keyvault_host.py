"""Our host resolves Key Vault references at start, as the platform does, and never prints a value."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import local.host.keyvault
from local.host.keyvault import resolve_references
from local.host.runner import load
from shared.platform.keyvault import SecretReader
from tests.test_keyvault_double import FakeVault, StaticTokenCredential, VaultTransport

VALKEY_PASSWORD = "pa55-from-the-vault"
KV = "https://tasklane-kv.vault.azure.net"
OTLP_HEADERS = "signoz-ingestion-key=0123456789abcdef"


@pytest.fixture
def vault() -> FakeVault:
    found = FakeVault()
    found.set_secret("valkey-password", VALKEY_PASSWORD)
    found.set_secret("signoz-otlp-headers", OTLP_HEADERS)
    return found


def reader(*vaults: FakeVault) -> SecretReader:
    return SecretReader(StaticTokenCredential(), transport=VaultTransport(*vaults), retry_total=0)


def test_references_in_both_forms_become_the_secrets(vault: FakeVault) -> None:
    # Given settings referring to the vault both ways, and one plain setting
    environ = {
        "VALKEY_PASSWORD": f"@Microsoft.KeyVault(SecretUri={vault.url}/secrets/valkey-password/)",
        "OTEL_EXPORTER_OTLP_HEADERS": (
            "@Microsoft.KeyVault(VaultName=tasklane-kv;SecretName=signoz-otlp-headers)"
        ),
        "TASKS_QUEUE": "tasks",
    }
    # When the references are resolved
    failures = resolve_references(environ, reader(vault))
    # Then each holds its secret's value and the plain one is untouched
    assert failures == []
    assert environ == {
        "VALKEY_PASSWORD": VALKEY_PASSWORD,
        "OTEL_EXPORTER_OTLP_HEADERS": OTLP_HEADERS,
        "TASKS_QUEUE": "tasks",
    }


@pytest.mark.parametrize(
    ("vault_state", "reference", "reason"),
    [
        ("missing", "SecretUri=https://tasklane-kv.vault.azure.net/secrets/nope", "not found"),
        (
            "denied",
            "SecretUri=https://tasklane-kv.vault.azure.net/secrets/valkey-password",
            "403 ForbiddenByRbac",
        ),
        (
            "unreachable",
            "SecretUri=https://tasklane-kv.vault.azure.net/secrets/valkey-password",
            "unreachable",
        ),
        (
            "missing",
            "SecretUri=http://tasklane-kv.vault.azure.net/secrets/valkey-password",
            "not an https URI",
        ),
    ],
)
def test_a_failure_keeps_the_reference_and_warns_naming_the_setting_and_reason(
    vault: FakeVault, vault_state: str, reference: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a reference the vault cannot answer
    vault.denied = vault_state == "denied"
    vault.reachable = vault_state != "unreachable"
    text = f"@Microsoft.KeyVault({reference})"
    environ = {"VALKEY_PASSWORD": text}
    # When references are resolved
    with caplog.at_level(logging.WARNING, logger="local.host.keyvault"):
        failures = resolve_references(environ, reader(vault))
    # Then the setting keeps its reference text, as in Azure, and a warning names it and the reason
    assert environ == {"VALKEY_PASSWORD": text}
    assert [f.setting for f in failures] == ["VALKEY_PASSWORD"]
    assert reason in failures[0].reason
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "VALKEY_PASSWORD" in warning.getMessage()
    assert reason in warning.getMessage()


def test_no_vault_client_is_made_when_no_setting_refers_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings without references, and no way to make a reader
    def no_reader(*args: object, **kwargs: object) -> SecretReader:
        raise AssertionError("a reader was made although nothing refers to a vault")

    monkeypatch.setattr(local.host.keyvault, "SecretReader", no_reader)
    environ = {"TASKS_QUEUE": "tasks", "VALKEY_URL": "valkey://127.0.0.1:6379/0"}
    # When references are resolved, then nothing happens
    assert resolve_references(environ) == []


def test_the_host_resolves_references_when_it_loads_and_prints_no_value(
    vault: FakeVault,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given an app whose local.settings.json refers to the vault, and one reference that fails
    (tmp_path / "function_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.route(route='ping', auth_level=func.AuthLevel.ANONYMOUS)\n"
        "def ping(req: func.HttpRequest) -> str:\n    return 'pong'\n",
        encoding="utf-8",
    )
    settings = {
        "VALKEY_PASSWORD": f"@Microsoft.KeyVault(SecretUri={vault.url}/secrets/valkey-password)",
        "OTEL_EXPORTER_OTLP_HEADERS": f"@Microsoft.KeyVault(SecretUri={vault.url}/secrets/absent)",
    }
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": settings}), encoding="utf-8")
    monkeypatch.setattr(local.host.keyvault, "SecretReader", lambda: reader(vault))
    environ: dict[str, str] = {}
    caplog.set_level(logging.DEBUG)
    # When the host loads the app
    loaded = load(tmp_path, environ)
    # Then the settings hold the secret, and the failure was reported by setting name
    assert [fn.name for fn in loaded.http_functions] == ["ping"]
    assert environ["VALKEY_PASSWORD"] == VALKEY_PASSWORD
    assert environ["OTEL_EXPORTER_OTLP_HEADERS"].startswith("@Microsoft.KeyVault(")
    assert "OTEL_EXPORTER_OTLP_HEADERS" in caplog.text
    # And no secret value reached the log or the console
    captured = capsys.readouterr()
    for value in (VALKEY_PASSWORD, OTLP_HEADERS):
        assert value not in caplog.text
        assert value not in captured.out + captured.err
