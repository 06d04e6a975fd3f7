"""The Bicep says what the app and the design rely on: queue limits, identity, no keys, no secrets.

Bicep is read with pycep, the parser checkov itself uses, so a file that does not parse here is one
checkov would silently skip. Values that are parameters read as the parameter's name.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from local.host.triggers.rabbitmq import MAX_REQUEUE_COUNT
from shared.brokers.lanes import PRIORITIES, lane_queue
from shared.pipeline.registry import MAX_ATTEMPTS_LIMIT

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
FUNCTION_APP = MODULES / "function-app.bicep"
#: One priority lane's queues and roles; servicebus.bicep makes one per priority.
LANE = MODULES / "servicebus-lane.bicep"

ROLES = {
    "Azure Service Bus Data Sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "Azure Service Bus Data Receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "Azure Service Bus Data Owner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
}


_PARSER = BicepParser()


@functools.cache
def bicep(path: Path) -> dict[str, Any]:
    """One Bicep file as pycep reads it (parameters, variables, resources, modules, outputs)."""
    parsed: dict[str, Any] = _PARSER.parse(file_path=path)
    return parsed


def resources(path: Path, resource_type: str) -> dict[str, dict[str, Any]]:
    """The file's resources of one type, by symbolic name, as their configuration."""
    found = {}
    for name, resource in bicep(path).get("resources", {}).items():
        if resource["type"] == resource_type:
            config = resource["config"]
            # A conditional resource (`= if (...) {...}`) nests its body under the condition.
            found[name] = config["config"] if "condition" in config else config
    return found


def only(path: Path, resource_type: str) -> dict[str, Any]:
    (config,) = resources(path, resource_type).values()
    return config


def setting_groups() -> dict[str, dict[str, Any]]:
    """The function app's settings by the condition they are set under: ``always``, or the name of the
    Bicep variable that gates them. The site's ``appSettings`` is ``concat()`` of setting lists (Bicep
    variables), each either always included or as ``condition ? list : []``."""
    variables = bicep(FUNCTION_APP)["variables"]
    expression = only(FUNCTION_APP, "Microsoft.Web/sites")["properties"]["siteConfig"]["appSettings"]
    groups: dict[str, dict[str, Any]] = {}
    for argument in expression["function"]["parameters"].values():
        if isinstance(argument, str):
            condition, name = "always", argument
        else:
            operands = argument["operator"]["operands"]
            assert operands["false_value"] == [], "a conditional group of settings adds nothing otherwise"
            condition, name = operands["condition"], operands["true_value"]
        groups[condition] = {item["name"]: item["value"] for item in variables[name]["value"]}
    return groups


def app_settings() -> dict[str, Any]:
    """Every setting the Bicep can give the function app: name -> value (a literal, a parameter's name or
    an expression), whatever condition it is set under."""
    return {name: value for group in setting_groups().values() for name, value in group.items()}


def role_ids(path: Path, scope: str) -> set[str]:
    """The role definition ids the file assigns at ``scope`` (a resource's symbolic name)."""
    roles = bicep(path).get("variables", {}).get("roles", {}).get("value", {})
    found = set()
    for config in resources(path, "Microsoft.Authorization/roleAssignments").values():
        if config["scope"] != scope:
            continue
        name = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        if isinstance(name, dict):  # roles.<key>
            name = roles[name["operator"]["operands"]["operand_2"]]
        else:  # a variable holding the id
            name = bicep(path)["variables"][name]["value"]
        found.add(name)
    return found


def dotted(value: Any) -> str:
    """A property access as Bicep writes it (``identity.outputs.principalId``), from pycep's operator tree."""
    if isinstance(value, str):
        return value
    operands = value["operator"]["operands"]
    assert value["operator"]["type"] == "property_accessor", value
    return f"{dotted(operands['operand_1'])}.{dotted(operands['operand_2'])}"


_INFIX = {"and": "&&", "or": "||", "equals": "==", "not_equals": "!="}


def render(value: Any) -> str:
    """A Bicep expression as written, from pycep's tree (the few forms the templates use)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"[{', '.join(render(v) for v in value)}]"
    if "function" in value:
        function = value["function"]
        return f"{function['type']}({', '.join(render(a) for a in function['parameters'].values())})"
    kind, operands = value["operator"]["type"], value["operator"]["operands"]
    if kind == "not":
        return f"!{render(operands['bool_value'])}"
    if kind == "property_accessor":
        return dotted(value)
    if kind == "conditional":
        parts = (operands["condition"], operands["true_value"], operands["false_value"])
        return "{} ? {} : {}".format(*(render(p) for p in parts))
    return f" {_INFIX[kind]} ".join(render(o) for o in operands.values())


def walk(value: Any) -> Iterator[Any]:
    """Every dict and list nested in ``value`` (pycep nests conditionals as operator trees)."""
    yield value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    for child in children:
        yield from walk(child)


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_template_parses_so_checkov_scans_it(path: Path) -> None:
    assert bicep(path)["resources"] or bicep(path)["modules"]


def test_the_queue_allows_as_many_deliveries_as_the_registry_allows_attempts() -> None:
    # The registry caps max_attempts at the RabbitMQ extension's requeue limit (our host's copy of
    # it); Service Bus must agree, so a crashing task is stopped after as many deliveries everywhere.
    path = LANE
    queue = resources(path, "Microsoft.ServiceBus/namespaces/queues")["queue"]["properties"]
    count = queue["maxDeliveryCount"]
    if isinstance(count, str):
        count = bicep(path)["variables"][count]["value"]
    assert count == MAX_ATTEMPTS_LIMIT == MAX_REQUEUE_COUNT == 5


def test_every_dead_letter_lands_in_the_queue_the_app_dead_letters_to() -> None:
    # The app sends its dead letters to <queue>.dead-letter; the task queue forwards its own there.
    found = resources(LANE, "Microsoft.ServiceBus/namespaces/queues")
    target = found["queue"]["properties"]["forwardDeadLetteredMessagesTo"]["operator"]["operands"]
    assert (target["operand_1"], target["operand_2"]) == ("deadLetters", "name")
    assert found["deadLetters"]["name"] == "${queueName}.dead-letter"


def test_the_queue_drops_duplicates_and_dead_letters() -> None:
    queue = resources(LANE, "Microsoft.ServiceBus/namespaces/queues")["queue"]
    queue = queue["properties"]
    assert queue["requiresDuplicateDetection"] is True  # message id = task id
    assert re.fullmatch(r"PT\d+M", queue["duplicateDetectionHistoryTimeWindow"])
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["requiresSession"] is False


def test_service_bus_takes_identities_only_with_roles_scoped_to_the_queue() -> None:
    namespace = only(MODULES / "servicebus.bicep", "Microsoft.ServiceBus/namespaces")["properties"]
    path = LANE
    assert namespace["disableLocalAuth"] is True
    assert namespace["minimumTlsVersion"] == "1.2"
    wanted = {ROLES[f"Azure Service Bus Data {role}"] for role in ("Sender", "Receiver", "Owner")}
    assert role_ids(path, scope="queue") == wanted


def test_service_bus_has_a_lane_per_priority_named_as_the_app_names_them() -> None:
    # shared/brokers/lanes.py: normal is the queue itself, the others <queue>.<priority>.
    found = bicep(MODULES / "servicebus.bicep")
    lanes = found["variables"]["lanes"]["value"]
    assert sorted("tasks" + suffix for suffix in lanes) == sorted(lane_queue("tasks", p) for p in PRIORITIES)
    assert "lane" in found["modules"]


def test_key_vault_uses_rbac_and_cannot_lose_its_secrets() -> None:
    path = MODULES / "keyvault.bicep"
    vault = only(path, "Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    assert vault["enablePurgeProtection"] is True
    # The app reads secrets; the deployer may set them (tests/test_azure_operations.py).
    assert role_ids(path, scope="vault") == {
        ROLES["Key Vault Secrets User"],
        ROLES["Key Vault Secrets Officer"],
    }


def test_the_vault_holds_only_the_signoz_key() -> None:
    # Valkey has no secret: the app signs in to the cache with a Microsoft Entra token.
    names = {
        config["name"]
        for path in MODULES.glob("*.bicep")
        for config in resources(path, "Microsoft.KeyVault/vaults/secrets").values()
    }
    assert names == {"signoz-otlp-headers"}


def test_storage_refuses_shared_keys_and_serves_the_identity() -> None:
    path = MODULES / "storage.bicep"
    account = only(path, "Microsoft.Storage/storageAccounts")["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert ROLES["Storage Blob Data Owner"] in role_ids(path, scope="account")


def test_the_function_app_runs_on_flex_consumption_with_its_own_identity() -> None:
    path = MODULES / "function-app.bicep"
    plan = only(path, "Microsoft.Web/serverfarms")
    site = only(path, "Microsoft.Web/sites")
    config = site["properties"]["functionAppConfig"]
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityId"
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    # The runtime Azure runs is the Python the project is checked against.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["runtime"] == {"name": "python", "version": pyproject["tool"]["mypy"]["python_version"]}


def test_scale_is_set_by_parameters_and_the_http_group_is_kept_warm() -> None:
    path = MODULES / "function-app.bicep"
    scale = only(path, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["instanceMemoryMB"] in bicep(path)["parameters"]
    assert scale["maximumInstanceCount"] in bicep(path)["parameters"]
    groups = [
        node for node in walk(scale["alwaysReady"]) if isinstance(node, dict) and "instanceCount" in node
    ]
    assert [group["name"] for group in groups] == ["http"]


def test_app_settings_hold_no_secret_only_key_vault_references() -> None:
    settings = app_settings()
    assert settings["OTEL_EXPORTER_OTLP_HEADERS"].startswith(
        "@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/"
    )
    assert "VALKEY_PASSWORD" not in settings
    # Nothing else looks like a key or a connection string with one.
    for name, value in settings.items():
        text = json.dumps(value)
        assert not re.search(r"AccountKey=|SharedAccessKey=|listKeys\(|password=", text, re.IGNORECASE), name


def test_flex_consumption_is_not_given_the_settings_it_refuses() -> None:
    refused = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"}
    assert not refused & set(app_settings())


def test_valkey_is_reached_over_tls_with_one_shard() -> None:
    path = MODULES / "cache.bicep"
    cache = only(path, "Microsoft.Cache/redisEnterprise")["properties"]
    database = only(path, "Microsoft.Cache/redisEnterprise/databases")["properties"]
    assert cache["minimumTlsVersion"] == "1.2"
    assert database["clientProtocol"] == "Encrypted"
    assert database["clusteringPolicy"] == "NoCluster"
    assert app_settings()["VALKEY_URL"].startswith("valkeys://")


def test_valkey_takes_the_apps_entra_token_and_no_key() -> None:
    path = MODULES / "cache.bicep"
    database = only(path, "Microsoft.Cache/redisEnterprise/databases")["properties"]
    access = only(path, "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments")
    assert database["accessKeysAuthentication"] == "Disabled"
    assert access["properties"] == {"accessPolicyName": "default", "user": {"objectId": "principalId"}}
    # The identity the cache lets in is the one the app runs as, and the app asks for its token.
    cache_module = bicep(INFRA / "main.bicep")["modules"]["cache"]["config"]["params"]
    assert dotted(cache_module["principalId"]) == "identity.outputs.principalId"
    settings = app_settings()
    assert settings["VALKEY_CREDENTIAL"] == "entra"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"


def test_every_azd_parameter_is_a_template_parameter_and_every_required_one_is_mapped() -> None:
    declared = bicep(INFRA / "main.bicep")["parameters"]
    mapped = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(mapped) <= set(declared)
    required = {name for name, param in declared.items() if param["default"] is None}
    assert required <= set(mapped)


# -- CI and the repository ------------------------------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"


def test_no_workflow_uses_a_stored_secret() -> None:
    for workflow in WORKFLOWS.glob("*.yml"):
        assert "secrets." not in workflow.read_text(encoding="utf-8"), workflow.name


def test_deploy_signs_in_with_a_federated_credential_named_by_variables() -> None:
    deploy = (WORKFLOWS / "deploy.yml").read_text(encoding="utf-8")
    assert re.search(r"^\s+id-token: write", deploy, re.MULTILINE)
    assert "uses: azure/login@v2" in deploy
    for field in ("client-id", "tenant-id", "subscription-id"):
        assert re.search(rf"{field}: \$\{{\{{ vars\.AZURE_[A-Z_]+ \}}\}}", deploy), field
    assert "azd provision" in deploy
    assert "azd deploy" in deploy


def test_ci_runs_the_commands_people_run() -> None:
    test = (WORKFLOWS / "test.yml").read_text(encoding="utf-8")
    assert "run: make check" in test
    assert "run: .ci/run" in test  # `make test` on a fresh Debian


def test_no_secret_is_committed() -> None:
    # Azurite's account key is public (documented for its emulator account, devstoreaccount1).
    azurite_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    patterns = [
        r"AccountKey=(?!" + re.escape(azurite_key) + r")[A-Za-z0-9+/=]{20,}",
        r"SharedAccessKey=[A-Za-z0-9+/=]{20,}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"signoz-ingestion-key=[A-Za-z0-9-]{16,}",
    ]
    # Everything that is deployed, provisions or configures (tests hold made-up values on purpose).
    checked = [
        *(
            ROOT / name
            for name in ("azure.yaml", "function_app.py", "host.json", "local.settings.emulator.json")
        ),
        *(ROOT / name for name in ("README.md", ".funcignore", "requirements.txt")),
        *INFRA.rglob("*"),
        *WORKFLOWS.glob("*"),
        *(ROOT / "functions").rglob("*.py"),
        *(ROOT / "shared").rglob("*.py"),
    ]
    for path in checked:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for pattern in patterns:
                assert not re.search(pattern, text), f"{path.relative_to(ROOT)} matches {pattern}"


def test_azd_deploys_the_app_folder_as_a_python_function_app() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^infra:\n  provider: bicep\n  path: infra\n", azure_yaml, re.MULTILINE)
    assert re.search(
        r"^  api:\n    project: \.\n    language: python\n    host: function$", azure_yaml, re.MULTILINE
    )
    # The Bicep tags the function app with the service name azd looks for.
    site = only(MODULES / "function-app.bicep", "Microsoft.Web/sites")
    assert "'azd-service-name': 'api'" in (MODULES / "function-app.bicep").read_text(encoding="utf-8")
    assert site["kind"] == "functionapp,linux"
