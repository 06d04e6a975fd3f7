"""Running tasklane in Azure day to day: platform logs without SigNoz, a deployer who can set the one
secret, a vault that can be recovered, task state that survives the cache losing both nodes, no secret
in the deployment package, and no timer run at every scale-out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_deploy_package import azd_rules, core_tools_rules, funcignore_lines
from tests.test_infra import INFRA, MODULES, ROLES, bicep, dotted, only, render, resources

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSTICS = "Microsoft.Insights/diagnosticSettings"

#: Per module: the resource (symbolic name) whose platform log goes to Log Analytics, and its category.
PLATFORM_LOGS = {
    "function-app.bicep": ("site", "FunctionAppLogs"),  # listeners, Key Vault references, invocations
    "servicebus.bicep": ("namespace", "OperationalLogs"),
    "keyvault.bicep": ("vault", "AuditEvent"),
    "cache.bicep": ("database", "ConnectionEvents"),  # connections and AUTH, refused tokens included
}


@pytest.mark.parametrize("module", sorted(PLATFORM_LOGS))
def test_each_service_logs_to_the_workspace_without_signoz(module: str) -> None:
    scope, category = PLATFORM_LOGS[module]
    settings = [
        config for config in resources(MODULES / module, DIAGNOSTICS).values() if config["scope"] == scope
    ]
    assert len(settings) == 1
    (setting,) = settings
    assert setting["properties"]["workspaceId"] == "logAnalyticsWorkspaceId"
    assert [log["category"] for log in setting["properties"]["logs"]] == [category]
    # And main.bicep hands every one of these modules the workspace it creates.
    modules = {
        found["detail"]["path"]: found["config"] for found in bicep(INFRA / "main.bicep")["modules"].values()
    }
    passed = modules[f"modules/{module}"]["params"]["logAnalyticsWorkspaceId"]
    assert dotted(passed) == "monitoring.outputs.id"


def test_the_workspace_is_one_of_ours() -> None:
    workspace = only(MODULES / "monitoring.bicep", "Microsoft.OperationalInsights/workspaces")
    assert workspace["properties"]["sku"] == {"name": "PerGB2018"}
    assert workspace["properties"]["retentionInDays"] == "retentionInDays"
    assert bicep(INFRA / "main.bicep")["parameters"]["logRetentionInDays"]["default"] == 30


def test_the_deployer_may_set_the_secret_the_readme_has_them_set() -> None:
    path = MODULES / "keyvault.bicep"
    assignment = bicep(path)["resources"]["deployerSecretsOfficer"]["config"]
    assert render(assignment["condition"]) == "!empty(deployerPrincipalId)"
    properties = assignment["config"]["properties"]
    assert properties["principalId"] == "deployerPrincipalId"
    assert ROLES["Key Vault Secrets Officer"] == bicep(path)["variables"]["keyVaultSecretsOfficer"]["value"]
    # A user on a laptop, a service principal in CI: no principalType, so ARM takes either.
    assert "principalType" not in properties
    # azd fills AZURE_PRINCIPAL_ID with whoever runs it.
    mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert mapped["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    key_vault = bicep(INFRA / "main.bicep")["modules"]["keyVault"]["config"]["params"]
    assert key_vault["deployerPrincipalId"] == "principalId"


def test_a_soft_deleted_vault_can_be_recovered_by_setting_one_variable() -> None:
    vault = only(MODULES / "keyvault.bicep", "Microsoft.KeyVault/vaults")["properties"]
    assert vault["createMode"] == "createMode"
    declared = bicep(INFRA / "main.bicep")["parameters"]["keyVaultCreateMode"]
    assert declared["default"] == "default"
    allowed = [d["argument"] for d in declared["decorators"] if d["type"] == "allowed"]
    assert allowed == [["default", "recover"]]
    mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert mapped["keyVaultCreateMode"]["value"] == "${KEY_VAULT_CREATE_MODE=default}"


def test_task_state_is_appended_to_disk_every_second() -> None:
    database = only(MODULES / "cache.bicep", "Microsoft.Cache/redisEnterprise/databases")["properties"]
    assert database["persistence"] == {"aofEnabled": True, "aofFrequency": "1s", "rdbEnabled": False}
    cache = only(MODULES / "cache.bicep", "Microsoft.Cache/redisEnterprise")["properties"]
    assert cache["highAvailability"] == "Enabled"


def test_vnet_integration_uses_the_delegation_flex_consumption_needs() -> None:
    # Microsoft.App/environments, whose resource provider the subscription must have registered.
    vnet = only(MODULES / "network.bicep", "Microsoft.Network/virtualNetworks")
    (app,) = [subnet for subnet in vnet["properties"]["subnets"] if subnet["name"] == "app"]
    services = [d["properties"]["serviceName"] for d in app["properties"]["delegations"]]
    assert services == ["Microsoft.App/environments"]


@pytest.mark.parametrize("rules", [azd_rules, core_tools_rules], ids=["azd", "core-tools"])
@pytest.mark.parametrize("path", [".azure/tasklane-dev/.env", ".azure/config.json", ".env", ".env.local"])
def test_azds_environment_and_dotenv_files_are_never_deployed(rules: object, path: str) -> None:
    # .azure/<env>/.env holds SIGNOZ_INGESTION_KEY when it was set with `azd env set`.
    ignored = rules(funcignore_lines())  # type: ignore[operator]
    parts = path.split("/")
    assert any(ignored("/".join(parts[: i + 1]), i < len(parts) - 1) for i in range(len(parts)))


@pytest.mark.parametrize(("profile", "expected"), [("azure", False), ("local", True)])
def test_the_backlog_timer_runs_at_start_only_locally(profile: str, expected: bool) -> None:
    # Microsoft advises against runOnStartup in production: every new instance would fire it.
    code = (
        "import json\n"
        "from functions import backlog\n"
        "(builder,) = backlog.bp._function_builders\n"
        "(binding,) = builder.build().get_bindings()\n"
        "print(json.dumps(binding.get_dict_repr().get('runOnStartup')))\n"
    )
    environ = {"PATH": "/usr/bin:/bin", "TASKLANE_PROFILE": profile}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) is expected
