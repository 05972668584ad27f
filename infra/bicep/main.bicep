// Recurring integrations on Azure Functions: everything one deployment needs, in a new resource
// group. Deploy with `azd up` (main.parameters.json maps azd environment variables to these
// parameters) or `az deployment sub create` (see docs/deployment.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME). Seeds the unique resource names and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create (empty: rg-<environmentName>).')
param resourceGroupName string = ''

@description('Function App name, which is also its host name <name>.azurewebsites.net (empty: generated).')
param functionAppName string = ''

@description('Object ID of the deploying user (azd: AZURE_PRINCIPAL_ID), granted the storage data roles to inspect data. Empty: none.')
param principalId string = ''

@description('Kind of principalId: User for a person; ServicePrincipal when a pipeline deploys.')
@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param principalType string = 'User'

@description('Entra tenant whose tokens the app accepts (AUTH_TENANT_ID). Empty: the tenant of the deployment.')
param authTenantId string = tenant().tenantId

@minLength(1)
@description('Accepted token audiences, comma-separated (AUTH_AUDIENCES): the App ID URI of the API app registration (for example api://recurring-integrations), and its client ID for v2 tokens. The app\'s own https base URL is always accepted too.')
param authAudiences string

@description('App role (roles claim) that grants the management API and the admin UI (AUTH_ADMIN_ROLE). Empty: Integrations.Admin.')
param authAdminRole string = 'Integrations.Admin'

@description('Application (client) IDs that are administrators without holding the role, comma-separated (AUTH_ADMIN_APPS).')
param authAdminApps string = ''

@description('Client ID of the workspace UI\'s single-page app registration (WORKSPACE_CLIENT_ID), for signing in at /workspace/. Empty: the workspace says it is not configured.')
param workspaceClientId string = ''

@description('NCRONTAB schedule (six fields, seconds first) of the scheduler that dispatches due jobs (SCHEDULER_SCHEDULE). Default: every minute.')
param schedulerSchedule string = '0 * * * * *'

@description('Public https base URL, when clients come through a custom domain or a gateway (PUBLIC_BASE_URL). Empty: the app\'s default https host name.')
param publicBaseUrl string = ''

@description('More application settings for the Function App, as [{name, value}], such as schedules.')
param extraAppSettings array = []

@description('Days after which files in the inbound, outbound, uploads, errors and staging containers are deleted.')
@minValue(1)
@maxValue(3650)
param fileRetentionDays int = 30

@description('Replication of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Flex Consumption: maximum number of instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption: spread instances over availability zones (only in regions that offer it for Flex Consumption).')
param zoneRedundant bool = false

@description('Days to keep logs in the Log Analytics workspace.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Largest request body the Functions host accepts, in bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT). Raise it together with maxEnqueueBytes.')
@minValue(1048576)
param requestBodySizeLimitBytes int = 104857600

@description('Largest file enqueue accepts, in bytes (MAX_ENQUEUE_BYTES); below requestBodySizeLimitBytes. Larger files go through the package API.')
@minValue(1)
param maxEnqueueBytes int = 94371840

@description('Private networking: VNet integration of the app, and storage reachable only through private endpoints (public network access disabled). Off by default.')
param privateNetworking bool = false

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = empty(functionAppName) ? '${abbrs.webSitesFunctions}api-${resourceToken}' : toLower(functionAppName)
var deploymentContainerName = 'app-package-${resourceToken}'
var effectiveTenantId = empty(authTenantId) ? tenant().tenantId : authTenantId
var effectiveAdminRole = empty(authAdminRole) ? 'Integrations.Admin' : authAdminRole

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    fileRetentionDays: fileRetentionDays
    privateNetworking: privateNetworking
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    networkSecurityGroupName: '${abbrs.networkNetworkSecurityGroups}${resourceToken}'
    location: location
    tags: tags
  }
}

module storagePrivateEndpoints 'modules/storage-private-endpoints.bicep' = if (privateNetworking) {
  name: 'storage-private-endpoints'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    virtualNetworkId: privateNetworking ? network.outputs.id : ''
    subnetId: privateNetworking ? network.outputs.privateEndpointSubnetId : ''
    namePrefix: '${abbrs.networkPrivateEndpoints}${resourceToken}-'
    location: location
    tags: tags
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: appName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    zoneRedundant: zoneRedundant
    virtualNetworkSubnetId: privateNetworking ? network.outputs.appSubnetId : ''
    authTenantId: effectiveTenantId
    authAudiences: authAudiences
    authAdminRole: effectiveAdminRole
    authAdminApps: authAdminApps
    workspaceClientId: workspaceClientId
    publicBaseUrl: publicBaseUrl
    schedulerSchedule: schedulerSchedule
    requestBodySizeLimitBytes: requestBodySizeLimitBytes
    maxEnqueueBytes: maxEnqueueBytes
    extraAppSettings: extraAppSettings
  }
  dependsOn: [
    rbac
    storagePrivateEndpoints
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output RESOURCE_GROUP string = rg.name
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_FUNCTION_APP_URL string = app.outputs.uri
output SERVICE_API_NAME string = app.outputs.name
output SERVICE_API_URI string = app.outputs.uri
// The base URL for D365 clients (the RIS instance URL), also the token audience they ask for:
// the routes live under /api/connector/... and /data/...
output CONNECTOR_BASE_URL string = app.outputs.publicBaseUrl
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
