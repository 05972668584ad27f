// The Function App on the Flex Consumption plan (FC1), Python 3.11, running as a user-assigned
// managed identity. Every connection is identity-based: the Functions host and the app reach
// Storage through AzureWebJobsStorage__* settings with credential=managedidentity, the deployment
// package container is read with the identity, and telemetry goes to Application Insights with an
// Entra token. There is no connection string with a key anywhere.

@description('Name of the Function App (also its host name: <name>.azurewebsites.net).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Resource ID of the user-assigned managed identity.')
param identityId string

@description('Client ID of the user-assigned managed identity.')
param identityClientId string

@description('Name of the storage account (AzureWebJobsStorage and application data).')
param storageAccountName string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Maximum number of instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Spread the plan\'s instances over availability zones (only in regions where Flex Consumption offers it).')
param zoneRedundant bool = false

@description('Resource ID of the subnet for VNet integration (empty: no VNet integration).')
param virtualNetworkSubnetId string = ''

@description('Entra tenant whose tokens are accepted (AUTH_TENANT_ID).')
param authTenantId string

@description('Accepted token audiences, comma-separated (AUTH_AUDIENCES). The app\'s own base URL is always added.')
param authAudiences string

@description('App role that grants the management API and admin UI (AUTH_ADMIN_ROLE).')
param authAdminRole string

@description('Application (client) IDs that are administrators without the role, comma-separated (AUTH_ADMIN_APPS).')
param authAdminApps string = ''

@description('Client ID of the workspace UI\'s single-page app registration (WORKSPACE_CLIENT_ID); empty until it is registered (docs/deployment.md).')
param workspaceClientId string = ''

@description('NCRONTAB schedule (six fields, seconds first) of the scheduler timer (SCHEDULER_SCHEDULE).')
param schedulerSchedule string = '0 * * * * *'

@description('NCRONTAB schedule of the poison sweeper timer, which ends work the queue host gave up on (POISON_SWEEP_SCHEDULE).')
param poisonSweepSchedule string = '30 * * * * *'

@description('Public https base URL of the app, used to build download locations (PUBLIC_BASE_URL). Empty: https://<name>.<App Service domain>. Set it when clients come through a custom domain or a gateway.')
param publicBaseUrl string = ''

@description('Largest request body the host accepts, in bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT). Larger bodies get the host\'s bare 413 before the app runs.')
@minValue(1048576)
param requestBodySizeLimitBytes int = 104857600

@description('Largest file enqueue accepts, in bytes (MAX_ENQUEUE_BYTES). Must stay below requestBodySizeLimitBytes, so that the app\'s own 413, which points partners to the package API, is what they see.')
@minValue(1)
param maxEnqueueBytes int = 94371840

@description('More application settings, as name/value pairs.')
param extraAppSettings array = []

// Default host names per cloud (the app does not opt in to unique default host names).
var appServiceDomains = {
  AzureCloud: 'azurewebsites.net'
  AzureUSGovernment: 'azurewebsites.us'
  AzureChinaCloud: 'chinacloudsites.cn'
}
var appServiceDomain = contains(appServiceDomains, environment().name) ? appServiceDomains[environment().name] : 'azurewebsites.net'
var defaultBaseUrl = 'https://${name}.${appServiceDomain}'
var effectiveBaseUrl = empty(publicBaseUrl) ? defaultBaseUrl : publicBaseUrl
// At least 1 MiB below the host's limit, whatever the parameters say.
var effectiveMaxEnqueueBytes = min(maxEnqueueBytes, requestBodySizeLimitBytes - 1048576)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat([
        // Functions host and app storage, identity-based (no connection string, no key).
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: storage.properties.primaryEndpoints.table
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Telemetry with Entra authentication (the component has local auth disabled).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // Bearer-token authentication of every caller (PROTOCOL.md section 8). D365 clients ask
        // for a token whose audience is the base URL, so the base URL is always an audience.
        {
          name: 'AUTH_MODE'
          value: 'entra'
        }
        {
          name: 'AUTH_TENANT_ID'
          value: authTenantId
        }
        {
          name: 'AUTH_AUDIENCES'
          value: '${authAudiences},${effectiveBaseUrl}'
        }
        {
          name: 'AUTH_ADMIN_ROLE'
          value: authAdminRole
        }
        {
          name: 'AUTH_ADMIN_APPS'
          value: authAdminApps
        }
        // The workspace UI signs users in with MSAL as this SPA app (served in /workspace/config.json).
        {
          name: 'WORKSPACE_CLIENT_ID'
          value: workspaceClientId
        }
        // Download locations handed to clients are built from this URL.
        {
          name: 'PUBLIC_BASE_URL'
          value: effectiveBaseUrl
        }
        // Resolves %SCHEDULER_SCHEDULE% in the scheduler's timer trigger.
        {
          name: 'SCHEDULER_SCHEDULE'
          value: schedulerSchedule
        }
        // Resolves %POISON_SWEEP_SCHEDULE% in the poison sweeper's timer trigger.
        {
          name: 'POISON_SWEEP_SCHEDULE'
          value: poisonSweepSchedule
        }
        // No HTML homepage: GET / is our root function (RIS's connection check), and never the host's page.
        {
          name: 'AzureWebJobsDisableHomepage'
          value: 'true'
        }
        // The host refuses bodies above this itself; the app's enqueue limit stays below it, so partners get
        // the app's 413 with the package-API pointer rather than the host's empty one.
        {
          name: 'FUNCTIONS_REQUEST_BODY_SIZE_LIMIT'
          value: string(requestBodySizeLimitBytes)
        }
        {
          name: 'MAX_ENQUEUE_BYTES'
          value: string(effectiveMaxEnqueueBytes)
        }
      ], extraAppSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Basic (user name and password) publishing is off: deployments authenticate with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output publicBaseUrl string = effectiveBaseUrl
output uri string = 'https://${functionApp.properties.defaultHostName}'
