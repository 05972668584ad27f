"""What the Bicep promises to the rest of the project: storage names, retention, outputs, the
parameters file, azure.yaml and the deployment guide."""

from __future__ import annotations

import json
import re

from shared.storage import names

from .bicep_model import (
    BICEP_DIR,
    MAIN,
    ROOT,
    function_app_settings,
    get,
    load_parameters_file,
    module,
    module_path,
    parse,
    resource,
)

STORAGE = module_path("storage")
AZD_PLACEHOLDER = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)(=[^}]*)?\}$")


def looped_names(symbol: str) -> list[str]:
    """The names a looped resource of storage.bicep creates, resolved through its array variable."""
    looped = resource(STORAGE, symbol)
    assert looped.loop and looped.loop["type"] == "array", f"{symbol} should loop over a name list"
    item, array = looped.loop["detail"]["item_name"], looped.loop["detail"]["array_name"]
    assert looped.get("name") == item
    return parse(STORAGE)["variables"][array]["value"]


def test_containers_match_shared_storage_names():
    assert sorted(looped_names("containers")) == sorted(names.CONTAINERS)


def test_queues_match_shared_storage_names_including_poison_queues():
    queues = looped_names("queues")
    assert sorted(queues) == sorted(names.QUEUES)
    for queue in (names.QUEUE_IMPORT, names.QUEUE_EXPORT):
        assert queue + names.POISON_SUFFIX in queues


def test_tables_match_shared_storage_names():
    assert sorted(looped_names("tables")) == sorted(names.TABLES)


def test_names_are_valid_azure_names():
    for container in looped_names("containers"):
        assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", container), container
    for queue in looped_names("queues"):
        assert re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", queue), queue
    for table in looped_names("tables"):
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", table), table


def test_deployment_package_container_is_created_and_used():
    container = resource(STORAGE, "deploymentContainer")
    assert container.get("name") == "deploymentContainerName"
    _, storage_body, _ = module(MAIN, "storage")
    _, app_body, _ = module(MAIN, "app")
    assert storage_body["params"]["deploymentContainerName"] == "deploymentContainerName"
    assert app_body["params"]["deploymentContainerName"] == "deploymentContainerName"
    assert parse(MAIN)["variables"]["deploymentContainerName"]["value"].startswith("app-package-")


def test_lifecycle_policy_deletes_old_files_after_the_retention_parameter():
    policy = resource(STORAGE, "lifecycle")
    assert policy.type == "Microsoft.Storage/storageAccounts/managementPolicies"
    assert policy.get("name") == "default"
    (rule,) = policy.get("properties", "policy", "rules")
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    definition = rule["definition"]
    assert (
        get(definition, "actions", "baseBlob", "delete", "daysAfterModificationGreaterThan")
        == "fileRetentionDays"
    )
    assert "blockBlob" in definition["filters"]["blobTypes"]
    prefixes = parse(STORAGE)["variables"][definition["filters"]["prefixMatch"]]["value"]
    containers = {p.split("/", 1)[0] for p in prefixes}
    assert all(p.endswith("/") for p in prefixes), "a prefix without '/' also matches longer container names"
    assert containers == {
        names.CONTAINER_INBOUND,
        names.CONTAINER_OUTBOUND,
        names.CONTAINER_UPLOADS,
        names.CONTAINER_ERRORS,
        names.CONTAINER_STAGING,
    }
    assert containers <= set(names.CONTAINERS)
    # The retention is a parameter of main.bicep, passed through.
    assert parse(STORAGE)["parameters"]["fileRetentionDays"]["type"] == "int"
    assert parse(MAIN)["parameters"]["fileRetentionDays"]["type"] == "int"
    _, body, _ = module(MAIN, "storage")
    assert body["params"]["fileRetentionDays"] == "fileRetentionDays"


def test_trigger_placeholders_are_set_by_bicep():
    # A %SETTING% in a trigger that resolves to nothing stops the host from indexing the function.
    sources = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    placeholders = set()
    for source in sources:
        text = source.read_text(encoding="utf-8")
        placeholders |= set(
            re.findall(r'(?:schedule|queue_name|connection|path)\s*=\s*"%([A-Za-z0-9_]+)%"', text)
        )
    assert "SCHEDULER_SCHEDULE" in placeholders, "the scheduler timer should read its schedule from a setting"
    missing = placeholders - set(function_app_settings())
    assert not missing, f"app settings missing for trigger placeholders: {missing}"


def test_every_auth_setting_the_app_reads_is_deployed():
    text = (ROOT / "shared" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'get(?:_int|_list)?\("([A-Z][A-Z0-9_]*)"', text))
    wanted = {name for name in read if name.startswith("AUTH_") and name != "AUTH_LOCAL_KEY_DIR"}
    wanted.add("PUBLIC_BASE_URL")
    assert {"AUTH_MODE", "AUTH_TENANT_ID", "AUTH_AUDIENCES", "AUTH_ADMIN_ROLE", "AUTH_ADMIN_APPS"} <= wanted
    missing = wanted - set(function_app_settings())
    assert not missing, f"settings the app reads but Bicep does not set: {missing}"


REQUIRED_OUTPUTS = {
    "AZURE_FUNCTION_APP_NAME",
    "AZURE_FUNCTION_APP_URL",
    "SERVICE_API_URI",
    "CONNECTOR_BASE_URL",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "RESOURCE_GROUP",
}


def test_outputs_are_present_in_azd_style():
    outputs = parse(MAIN)["outputs"]
    assert set(outputs) >= REQUIRED_OUTPUTS
    for name, output in outputs.items():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), name
        assert output["type"] == "string", name
    # No output hands out a secret.
    for name in outputs:
        assert "KEY" not in name and "CONNECTION_STRING" not in name, name


def test_parameters_file_references_only_declared_parameters():
    declared = parse(MAIN)["parameters"]
    given = load_parameters_file()
    assert set(given) <= set(declared), f"undeclared: {set(given) - set(declared)}"
    required = {name for name, p in declared.items() if p["default"] is None}
    assert required <= set(given), f"required but not in the file: {required - set(given)}"


def test_parameters_file_uses_azd_placeholders():
    given = {name: p["value"] for name, p in load_parameters_file().items()}
    assert given["environmentName"] == "${AZURE_ENV_NAME}"
    assert given["location"] == "${AZURE_LOCATION}"
    assert given["principalId"] == "${AZURE_PRINCIPAL_ID}"
    assert given["authAudiences"] == "${AUTH_AUDIENCES}"
    assert given["authAdminApps"] == "${AUTH_ADMIN_APPS}"
    for name, value in given.items():
        assert isinstance(value, str) and AZD_PLACEHOLDER.match(value), f"{name}: {value!r}"


def test_placeholders_with_an_empty_value_fall_back_to_defaults():
    # azd passes "" for an unset variable, which would override a Bicep default: main.bicep must
    # treat "" as "use the default" for every optional parameter the file maps without "=default".
    text = MAIN.read_text(encoding="utf-8")
    declared = parse(MAIN)["parameters"]
    for name, p in load_parameters_file().items():
        match = AZD_PLACEHOLDER.match(p["value"])
        if match.group(2) or declared[name]["default"] in (None, ""):
            continue
        assert re.search(rf"empty\({name}\)", text), f"{name}: an empty value would replace the default"


def test_azure_yaml_declares_the_function_service():
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    lines = [
        line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert re.search(r"^name: \S+", text, re.MULTILINE)
    services = lines.index("services:")
    assert lines[services + 1] == "  api:"
    block = lines[services + 2 : services + 5]
    assert sorted(block) == sorted(["    project: .", "    language: python", "    host: function"])
    infra = lines.index("infra:")
    infra_block = set(lines[infra + 1 : infra + 4])
    assert infra_block == {"  provider: bicep", "  path: infra/bicep", "  module: main"}
    assert (ROOT / "infra" / "bicep" / "main.bicep").is_file()


def deployment_doc() -> str:
    return (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


def test_deployment_doc_names_every_azd_variable_of_the_parameters_file():
    doc = deployment_doc()
    for name, p in load_parameters_file().items():
        variable = AZD_PLACEHOLDER.match(p["value"]).group(1)
        if variable in {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"}:
            continue
        assert variable in doc, f"docs/deployment.md does not explain {variable} ({name})"


def test_deployment_doc_az_command_overrides_only_declared_parameters():
    doc = deployment_doc()
    declared = set(parse(MAIN)["parameters"])
    commands = re.findall(r"az deployment sub create.*?(?:\n\s*\n|```)", doc, re.DOTALL)
    assert commands, "the guide should show az deployment sub create"
    overridden = set()
    for command in commands:
        overridden |= set(re.findall(r"(?:^|\s)(\w+)=", command))
    assert overridden, "the az command should override the azd placeholders"
    assert overridden <= declared, f"unknown parameters in the guide: {overridden - declared}"
    # Every placeholder of the parameters file must be overridden, or az would pass "${...}" literally.
    assert set(load_parameters_file()) <= overridden


def test_deployment_doc_covers_the_walkthrough():
    doc = deployment_doc()
    for needle in (
        "azd up",
        "Integrations.Admin",
        "api://",
        "/api/manage/jobs/",
        "authorizationPolicy",
        "/api/health",
        "/api/connector/enqueue/",
        "GetMessageStatus",
        "acquire_token_for_client",
        "/.default",
    ):
        assert needle in doc, needle


def test_bicep_dir_holds_no_bicepparam():
    # ARCHITECTURE.md: main.parameters.json only; a .bicepparam cannot be validated offline.
    assert not list(BICEP_DIR.rglob("*.bicepparam"))


def test_the_enqueue_limit_is_deployed_below_the_hosts_body_limit():
    """The host refuses bodies above FUNCTIONS_REQUEST_BODY_SIZE_LIMIT with an empty 413 before the app runs
    (HttpRequestBodySizeMiddleware); the app's 413 points partners to the package API only below it."""
    settings = function_app_settings()
    assert settings["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "requestBodySizeLimitBytes"}}
    }
    assert settings["MAX_ENQUEUE_BYTES"] == {
        "function": {"type": "string", "parameters": {"value_to_convert": "effectiveMaxEnqueueBytes"}}
    }
    text = (ROOT / "infra" / "bicep" / "modules" / "function-app.bicep").read_text(encoding="utf-8")
    assert "var effectiveMaxEnqueueBytes = min(maxEnqueueBytes, requestBodySizeLimitBytes - 1048576)" in text
    defaults = {
        name: int(value)
        for name, value in re.findall(r"param (requestBodySizeLimitBytes|maxEnqueueBytes) int = (\d+)", text)
    }
    assert defaults["maxEnqueueBytes"] < defaults["requestBodySizeLimitBytes"] == 104_857_600
    example = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    assert int(example["MAX_ENQUEUE_BYTES"]) < int(example["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"])
