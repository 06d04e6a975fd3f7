"""Telemetry in Azure: exported only where it can arrive, once, over one protocol.

The OTLP settings exist only when a SigNoz endpoint is given, and the headers setting (a Key Vault
reference) only when the vault holds the key; a reference the platform cannot resolve is its own text,
which the app refuses to send as a header. The host leaves the app's logs to the app
(``PYTHON_ENABLE_OPENTELEMETRY``) and exports over the app's protocol (``OTEL_EXPORTER_OTLP_PROTOCOL``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from shared import telemetry
from shared.pipeline.hooks import Hooks
from tests.test_infra import INFRA, MODULES, bicep, render, resources, setting_groups

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/signoz-otlp-headers/)"


# -- the app's guard -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "exporting"),
    [
        ("signoz-ingestion-key=abc", True),
        ("", True),  # a self-hosted SigNoz needs no key
        (REFERENCE, False),
        (f"  {REFERENCE.lower()}", False),
    ],
)
def test_an_unresolved_key_vault_reference_is_never_sent_as_a_header(headers: str, exporting: bool) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://ingest.eu.signoz.cloud:443"}
    settings = telemetry.TelemetrySettings.from_environ({**environ, "OTEL_EXPORTER_OTLP_HEADERS": headers})
    assert (settings.endpoint is not None) is exporting
    assert settings.enabled is exporting
    assert settings.unresolved_headers is not exporting


def test_the_app_says_why_it_exports_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the platform could not resolve the headers reference (the secret was never set)
    monkeypatch.setattr(telemetry, "_hooks", None)
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://x:443", "OTEL_EXPORTER_OTLP_HEADERS": REFERENCE}
    # When telemetry is configured, then nothing is installed and one warning names the setting
    with caplog.at_level(logging.WARNING, logger="shared.telemetry"):
        hooks = telemetry.configure(environ)
    assert type(hooks) is Hooks
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "shared.telemetry"]
    assert "OTEL_EXPORTER_OTLP_HEADERS" in warning
    assert "OTLP export is off" in warning


# -- the Bicep --------------------------------------------------------------------------------------------


def test_otlp_settings_exist_only_with_an_endpoint_and_the_header_only_with_a_key() -> None:
    variables = bicep(MODULES / "function-app.bicep")["variables"]
    groups = setting_groups()
    assert set(groups) == {"always", "exporting", "exportingWithKey"}
    assert render(variables["exporting"]["value"]) == "!empty(signozOtlpEndpoint)"
    assert render(variables["exportingWithKey"]["value"]) == "exporting && signozKeyInVault"
    assert not [name for name in groups["always"] if name.startswith("OTEL_EXPORTER_")]
    assert groups["exporting"] == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "signozOtlpEndpoint",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "PYTHON_ENABLE_OPENTELEMETRY": "true",
    }
    assert list(groups["exportingWithKey"]) == ["OTEL_EXPORTER_OTLP_HEADERS"]


def test_the_header_is_referenced_only_when_the_secret_exists() -> None:
    # The template writes the secret when given the key; or the vault held it already (said so).
    main = bicep(INFRA / "main.bicep")
    passed = main["modules"]["functionApp"]["config"]["params"]["signozKeyInVault"]
    assert render(passed) == "signozKeyInVault || !empty(signozIngestionKey)"
    secret = bicep(MODULES / "keyvault.bicep")["resources"]["signozHeaders"]["config"]
    assert render(secret["condition"]) == "!empty(signozIngestionKey)"
    secrets = resources(MODULES / "keyvault.bicep", "Microsoft.KeyVault/vaults/secrets")
    assert secrets["signozHeaders"]["name"] == "signoz-otlp-headers"
    reference = setting_groups()["exportingWithKey"]["OTEL_EXPORTER_OTLP_HEADERS"]
    assert reference.endswith("secrets/signoz-otlp-headers/)")


def test_azd_reads_the_endpoint_from_its_own_name_not_a_developers_otel_variable() -> None:
    # README's local setup exports OTEL_EXPORTER_OTLP_ENDPOINT to a local receiver; azd must not take it.
    text = (INFRA / "main.parameters.json").read_text(encoding="utf-8")
    mapped = json.loads(text)["parameters"]
    assert mapped["signozOtlpEndpoint"]["value"] == "${SIGNOZ_OTLP_ENDPOINT}"
    assert mapped["signozKeyInVault"]["value"] == "${SIGNOZ_KEY_IN_VAULT=false}"
    assert not re.search(r"\$\{OTEL_", text)
    assert bicep(INFRA / "main.bicep")["parameters"]["signozOtlpEndpoint"]["default"] == ""


def test_ci_deploys_with_the_same_telemetry_as_a_laptop_without_the_key() -> None:
    deploy = (ROOT / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8")
    assert "SIGNOZ_OTLP_ENDPOINT: ${{ vars.SIGNOZ_OTLP_ENDPOINT }}" in deploy
    assert "SIGNOZ_KEY_IN_VAULT: ${{ vars.SIGNOZ_KEY_IN_VAULT" in deploy
    assert "SIGNOZ_INGESTION_KEY" not in deploy


# -- host.json --------------------------------------------------------------------------------------------


def test_the_host_exports_only_its_warnings_while_its_own_log_keeps_everything() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["telemetryMode"] == "OpenTelemetry"
    # FunctionAppLogs (Log Analytics) keeps Information; SigNoz gets the host's warnings and its start.
    assert host["logging"]["logLevel"]["default"] == "Information"
    assert host["logging"]["OpenTelemetry"]["logLevel"] == {
        "default": "Warning",
        "Host.Startup": "Information",
    }
