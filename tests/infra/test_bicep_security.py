"""The security-relevant structure of the Bicep: identity everywhere, no keys, least privilege."""

from __future__ import annotations

import re

import pytest

from .bicep_model import (
    BICEP_DIR,
    MAIN,
    accessor_chain,
    bicep_files,
    function,
    function_app_settings,
    function_types,
    get,
    module,
    module_path,
    operator,
    parse,
    resource,
    resources_of_type,
)

STORAGE = module_path("storage")
FUNCTION_APP = module_path("function-app")
MONITORING = module_path("monitoring")
RBAC = module_path("rbac")
NETWORK = module_path("network")
PRIVATE_ENDPOINTS = module_path("storage-private-endpoints")

BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


def storage_account():
    (account,) = resources_of_type("Microsoft.Storage/storageAccounts")
    return account


def function_app():
    (site,) = resources_of_type("Microsoft.Web/sites")
    return site


def app_settings() -> dict[str, object]:
    return function_app_settings()


def conditional(node):
    op = operator(node)
    assert op and op[0] == "conditional", f"{node!r} is not a conditional"
    return op[1]["condition"], op[1]["true_value"], op[1]["false_value"]


# --- no keys, no connection strings ----------------------------------------------------------


SECRET_PATTERNS = [
    r"AccountKey\s*=",
    r"listKeys\s*\(",
    r"listAccountSas\s*\(",
    r"listServiceSas\s*\(",
    r"DefaultEndpointsProtocol",
    r"SharedAccessKey",
    r"InstrumentationKey\s*=",
    r"\.primaryKey\b",
]


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_no_keys_or_connection_strings_in_bicep_text(path):
    text = path.read_text(encoding="utf-8")
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text, re.IGNORECASE), f"{path.name} matches {pattern}"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_no_list_functions_in_parsed_bicep(path):
    listing = {t for t in function_types(parse(path)) if t.startswith("list")}
    assert not listing, f"{path.name} calls {listing}"


def test_no_plain_azurewebjobsstorage_setting():
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings
    assert not any(name.lower() == "azurewebjobsstorage" for name in settings)
    for name, value in settings.items():
        if isinstance(value, str):
            assert "AccountKey" not in value, name
    # Settings that Flex Consumption rejects, or that would bring back a key-based content share.
    forbidden = {
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
    }
    assert not forbidden & set(settings)


def test_settings_are_not_overwritten_by_a_config_resource():
    # A Microsoft.Web/sites/config 'appsettings' resource would replace siteConfig.appSettings.
    assert not resources_of_type("Microsoft.Web/sites/config")


# --- storage --------------------------------------------------------------------------------


def test_storage_account_disables_keys_and_public_blobs():
    props = storage_account().get("properties")
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowCrossTenantReplication"] is False


def test_storage_network_access_follows_private_networking():
    props = storage_account().get("properties")
    condition, when_private, when_public = conditional(props["publicNetworkAccess"])
    assert (condition, when_private, when_public) == ("privateNetworking", "Disabled", "Enabled")
    condition, when_private, _ = conditional(props["networkAcls"]["defaultAction"])
    assert (condition, when_private) == ("privateNetworking", "Deny")


def test_blob_soft_delete_is_on():
    (blob_service,) = resources_of_type("Microsoft.Storage/storageAccounts/blobServices")
    assert blob_service.get("properties", "deleteRetentionPolicy", "enabled") is True
    assert blob_service.get("properties", "deleteRetentionPolicy", "days") == "softDeleteRetentionDays"
    assert blob_service.get("properties", "containerDeleteRetentionPolicy", "enabled") is True


def test_containers_are_private():
    containers = resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert containers
    for container in containers:
        assert container.get("properties", "publicAccess") == "None", container.symbol


# --- function app ---------------------------------------------------------------------------


def test_plan_is_flex_consumption():
    (plan,) = resources_of_type("Microsoft.Web/serverfarms")
    assert plan.get("sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.get("properties", "reserved") is True


def test_function_app_is_python_311_on_flex_with_user_assigned_identity():
    site = function_app()
    assert "functionapp" in site.get("kind") and "linux" in site.get("kind")
    assert site.get("identity", "type") == "UserAssigned"
    assert site.get("identity", "userAssignedIdentities") == {"'${identityId}'": {}}
    config = site.get("properties", "functionAppConfig")
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"]["maximumInstanceCount"] == "maximumInstanceCount"
    assert config["scaleAndConcurrency"]["instanceMemoryMB"] == "instanceMemoryMB"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"].endswith("${deploymentContainerName}")
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert site.get("tags") == {
        "function": {"type": "union", "parameters": {"arg_1": "tags", "arg_2": {"'azd-service-name'": "api"}}}
    }


def test_scale_settings_are_main_parameters():
    params = parse(MAIN)["parameters"]
    assert params["maximumInstanceCount"]["type"] == "int"
    assert params["instanceMemoryMB"]["type"] == "int"
    _, body, _ = module(MAIN, "app")
    assert body["params"]["maximumInstanceCount"] == "maximumInstanceCount"
    assert body["params"]["instanceMemoryMB"] == "instanceMemoryMB"


def test_function_app_transport_security():
    site = function_app()
    assert site.get("properties", "httpsOnly") is True
    site_config = site.get("properties", "siteConfig")
    assert site_config["minTlsVersion"] == "1.2"
    assert site_config["scmMinTlsVersion"] == "1.2"
    assert site_config["ftpsState"] == "Disabled"
    assert site_config["http20Enabled"] is True


def test_basic_publishing_credentials_are_off():
    policies = resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {p.get("name") for p in policies} == {"ftp", "scm"}
    for policy in policies:
        assert policy.get("properties", "allow") is False


def test_storage_settings_are_identity_based():
    settings = app_settings()
    assert accessor_chain(settings["AzureWebJobsStorage__accountName"]) == ["storage", "name"]
    for service in ("blob", "queue", "table"):
        value = settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert accessor_chain(value) == ["storage", "properties", "primaryEndpoints", service]
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"


def test_auth_settings():
    settings = app_settings()
    assert settings["AUTH_MODE"] == "entra"
    assert settings["AUTH_TENANT_ID"] == "authTenantId"
    assert settings["AUTH_AUDIENCES"] == "${authAudiences},${effectiveBaseUrl}"
    assert settings["AUTH_ADMIN_ROLE"] == "authAdminRole"
    assert settings["AUTH_ADMIN_APPS"] == "authAdminApps"
    assert settings["PUBLIC_BASE_URL"] == "effectiveBaseUrl"
    default_url = parse(FUNCTION_APP)["variables"]["defaultBaseUrl"]["value"]
    assert default_url.startswith("https://${name}.")


def test_auth_parameters_of_main():
    params = parse(MAIN)["parameters"]
    tenant = params["authTenantId"]["default"]
    assert function(get(tenant, "operator", "operands", "operand_1"))[0] == "tenant"
    assert get(tenant, "operator", "operands", "operand_2") == "tenantId"
    assert params["authAdminRole"]["default"] == "Integrations.Admin"
    assert params["authAudiences"]["default"] is None, "the audience must be chosen at deployment"
    assert params["authAdminApps"]["default"] == ""
    _, body, _ = module(MAIN, "app")
    assert body["params"]["authAudiences"] == "authAudiences"
    assert body["params"]["authAdminApps"] == "authAdminApps"
    assert body["params"]["authTenantId"] == "effectiveTenantId"
    assert body["params"]["authAdminRole"] == "effectiveAdminRole"


def test_application_insights_settings_use_entra():
    settings = app_settings()
    assert accessor_chain(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]) == [
        "applicationInsights",
        "properties",
        "ConnectionString",
    ]
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "ClientId=${identityClientId};Authorization=AAD"
    )


# --- monitoring -----------------------------------------------------------------------------


def test_application_insights_is_workspace_based_without_local_auth():
    insights = resource(MONITORING, "applicationInsights")
    assert insights.type == "Microsoft.Insights/components"
    assert insights.get("properties", "DisableLocalAuth") is True
    assert accessor_chain(insights.get("properties", "WorkspaceResourceId")) == ["workspace", "id"]
    workspace = resource(MONITORING, "workspace")
    assert workspace.type == "Microsoft.OperationalInsights/workspaces"
    assert workspace.get("properties", "features", "disableLocalAuth") is True


# --- role assignments -----------------------------------------------------------------------


def role_assignments():
    found = {}
    for assignment in resources_of_type("Microsoft.Authorization/roleAssignments"):
        role = function(assignment.get("properties", "roleDefinitionId"))
        assert role and role[0] == "subscription_resource_id", assignment.symbol
        assert role[1]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        principal = assignment.get("properties", "principalId")
        key = (role[1]["resource_name_1"], assignment.get("scope"), principal)
        assert key not in found, f"duplicate assignment {key}"
        found[key] = assignment
    return found


def test_managed_identity_roles_are_exactly_the_least_privilege_set():
    identity = {k for k in role_assignments() if k[2] == "identityPrincipalId"}
    assert identity == {
        (BLOB_DATA_OWNER, "storage", "identityPrincipalId"),
        (QUEUE_DATA_CONTRIBUTOR, "storage", "identityPrincipalId"),
        (TABLE_DATA_CONTRIBUTOR, "storage", "identityPrincipalId"),
        (MONITORING_METRICS_PUBLISHER, "applicationInsights", "identityPrincipalId"),
    }
    for key, assignment in role_assignments().items():
        if key[2] == "identityPrincipalId":
            assert assignment.get("properties", "principalType") == "ServicePrincipal"
            assert assignment.condition is None


def test_role_scopes_are_the_storage_account_and_application_insights():
    scopes = {}
    for path in {a.file for a in resources_of_type("Microsoft.Authorization/roleAssignments")}:
        for r in resources_of_type("Microsoft.Storage/storageAccounts", existing=True) + resources_of_type(
            "Microsoft.Insights/components", existing=True
        ):
            if r.file == path:
                scopes[r.symbol] = r.type
    assert scopes == {
        "storage": "Microsoft.Storage/storageAccounts",
        "applicationInsights": "Microsoft.Insights/components",
    }
    for (_, scope, _), assignment in role_assignments().items():
        assert scope in scopes, f"{assignment.symbol} is scoped to {scope}"
        name = function(assignment.get("name"))
        assert name and name[0] == "guid"
        assert accessor_chain(name[1]["base_string"]) == [scope, "id"], assignment.symbol


def test_deploying_user_gets_storage_data_roles_only_when_given():
    user = {k: a for k, a in role_assignments().items() if k[2] == "userPrincipalId"}
    assert {k[0] for k in user} == {BLOB_DATA_OWNER, QUEUE_DATA_CONTRIBUTOR, TABLE_DATA_CONTRIBUTOR}
    for (_, scope, _), assignment in user.items():
        assert scope == "storage"
        assert assignment.get("properties", "principalType") == "userPrincipalType"
        op = operator(assignment.condition)
        assert op and op[0] == "not", f"{assignment.symbol} must be conditional on a non-empty principal"
        assert function(op[1]["bool_value"]) == ("empty", {"item_to_test": "userPrincipalId"})


def test_main_grants_roles_to_the_app_identity_and_the_deploying_user():
    _, body, _ = module(MAIN, "rbac")
    assert accessor_chain(body["params"]["identityPrincipalId"]) == ["identity", "outputs", "principalId"]
    assert body["params"]["userPrincipalId"] == "principalId"
    assert body["params"]["userPrincipalType"] == "principalType"
    principal_type = parse(MAIN)["parameters"]["principalType"]
    assert principal_type["default"] == "User"
    assert parse(RBAC)["parameters"]["userPrincipalType"]["default"] == "User"
    declared, app_body, _ = module(MAIN, "app")
    assert "rbac" in app_body.get("dependsOn", []), "the app should start after its roles exist"
    assert accessor_chain(app_body["params"]["identityId"]) == ["identity", "outputs", "id"]


# --- private networking ---------------------------------------------------------------------


def test_private_networking_is_an_off_by_default_switch():
    param = parse(MAIN)["parameters"]["privateNetworking"]
    assert (param["type"], param["default"]) == ("bool", False)
    for symbol in ("network", "storagePrivateEndpoints"):
        _, _, condition = module(MAIN, symbol)
        assert condition == "privateNetworking", symbol
    _, body, _ = module(MAIN, "storage")
    assert body["params"]["privateNetworking"] == "privateNetworking"
    _, body, _ = module(MAIN, "app")
    condition, when_private, when_public = conditional(body["params"]["virtualNetworkSubnetId"])
    assert condition == "privateNetworking"
    assert accessor_chain(when_private) == ["network", "outputs", "appSubnetId"]
    assert when_public == ""


def test_app_subnet_is_delegated_to_microsoft_app_environments():
    vnet = resource(NETWORK, "vnet")
    subnets = {s["name"]: s["properties"] for s in vnet.get("properties", "subnets")}
    delegated = [
        name
        for name, props in subnets.items()
        if any(
            d["properties"]["serviceName"] == "Microsoft.App/environments"
            for d in props.get("delegations", [])
        )
    ]
    assert len(delegated) == 1
    assert len(subnets) == 2


def test_private_endpoints_cover_blob_queue_and_table():
    parsed = parse(PRIVATE_ENDPOINTS)
    services = parsed["variables"]["services"]["value"]
    assert set(services) == {"blob", "queue", "table"}
    endpoints = resource(PRIVATE_ENDPOINTS, "privateEndpoints")
    assert endpoints.loop["detail"]["array_name"] == "services"
    (connection,) = endpoints.get("properties", "privateLinkServiceConnections")
    assert connection["properties"]["groupIds"] == [endpoints.loop["detail"]["item_name"]]
    assert accessor_chain(connection["properties"]["privateLinkServiceId"]) == ["storage", "id"]
    zones = resource(PRIVATE_ENDPOINTS, "dnsZones")
    assert zones.get("name").startswith("privatelink.${service}.")
    groups = resource(PRIVATE_ENDPOINTS, "dnsZoneGroups")
    assert groups.type == "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"
    links = resource(PRIVATE_ENDPOINTS, "dnsZoneLinks")
    assert links.get("properties", "virtualNetwork", "id") == "virtualNetworkId"
    assert links.get("properties", "registrationEnabled") is False
