// The function app on Flex Consumption: Python 3.11, the HTTP group kept warm, one user-assigned
// identity for everything, and app settings that hold no secret (a Key Vault reference instead).
// tests/test_infra_drift.py checks that every setting the code reads is set here.

param name string
param planName string
param location string
param tags object
param environmentName string

@description('The user-assigned identity (resource id and client id).')
param identityId string
param identityClientId string

@description('Host storage endpoints and the deployment package container.')
param storageBlobEndpoint string
param storageTableEndpoint string
param deploymentContainerName string

param serviceBusNamespace string
param queueName string
param keyVaultUri string
param cacheHostName string
param cachePort int

@description('Subnet for outbound VNet integration; empty for none.')
param appSubnetId string
@description('Log Analytics workspace for the host\'s own log (FunctionAppLogs).')
param logAnalyticsWorkspaceId string

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int
@minValue(1)
@maxValue(1000)
@description('Most on-demand instances of each scale group (the HTTP functions, each queue function, the timer); always-ready instances come on top.')
param maximumInstanceCount int
@minValue(0)
@description('Instances of the HTTP group kept running, so a request never waits for a cold start.')
param alwaysReadyHttpInstances int

param maxBacklog int
param maxBodyBytes int
param rateLimit string
param rateBurst int
param statusTtlSeconds int
param backlogSchedule string
@description('Where SigNoz ingests OTLP; empty: no OTLP settings at all, so nothing is exported.')
param signozOtlpEndpoint string
@description('The vault holds signoz-otlp-headers (set now or before): the OTLP headers reference it.')
param signozKeyInVault bool

// No secret here: the one secret is a Key Vault reference. Flex Consumption takes the worker runtime
// from functionAppConfig, never from FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION.
var appSettings = [
  // Host storage through the identity (AzureWebJobsStorage__*): no connection string, no key.
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: storageBlobEndpoint
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: storageTableEndpoint
  }

  {
    name: 'TASKLANE_PROFILE'
    value: 'azure'
  }
  {
    name: 'TASKS_QUEUE'
    value: queueName
  }
  // connection="ServiceBusConnection" in the bindings, and the broker, read these three.
  {
    name: 'ServiceBusConnection__fullyQualifiedNamespace'
    value: serviceBusNamespace
  }
  {
    name: 'ServiceBusConnection__credential'
    value: 'managedidentity'
  }
  {
    name: 'ServiceBusConnection__clientId'
    value: identityClientId
  }

  {
    name: 'VALKEY_URL'
    value: 'valkeys://${cacheHostName}:${cachePort}/0'
  }
  // A Microsoft Entra token of the identity below instead of a password (cache.bicep grants it).
  {
    name: 'VALKEY_CREDENTIAL'
    value: 'entra'
  }
  // azure-identity's setting: which user-assigned identity the app's own token requests use.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }

  {
    name: 'TASKS_MAX_BACKLOG'
    value: string(maxBacklog)
  }
  {
    name: 'TASKS_MAX_BODY_BYTES'
    value: string(maxBodyBytes)
  }
  {
    name: 'TASKS_RATE_LIMIT'
    value: rateLimit
  }
  {
    name: 'TASKS_RATE_BURST'
    value: string(rateBurst)
  }
  {
    name: 'TASKS_STATUS_TTL_SECONDS'
    value: string(statusTtlSeconds)
  }
  {
    name: 'BACKLOG_SCHEDULE'
    value: backlogSchedule
  }

  {
    name: 'OTEL_SERVICE_NAME'
    value: 'tasklane'
  }
  {
    name: 'OTEL_RESOURCE_ATTRIBUTES'
    value: 'deployment.environment=${environmentName},service.namespace=tasklane'
  }
]

// Only with an endpoint: the host and the app both export what these name.
var otlpSettings = [
  {
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT'
    value: signozOtlpEndpoint
  }
  // The host's .NET exporter defaults to gRPC; the app's Python exporter speaks HTTP. One protocol
  // for both, so one port serves both (SigNoz Cloud takes either on 443, a self-hosted one HTTP on 4318).
  {
    name: 'OTEL_EXPORTER_OTLP_PROTOCOL'
    value: 'http/protobuf'
  }
  // The worker exports its own logs (shared/telemetry); with this the host stops exporting them again.
  {
    name: 'PYTHON_ENABLE_OPENTELEMETRY'
    value: 'true'
  }
]

// Only when the vault holds the header: a reference to a secret that does not exist stays its own
// text, which both exporters would send as a malformed header on every export.
var otlpHeaderSettings = [
  {
    name: 'OTEL_EXPORTER_OTLP_HEADERS'
    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/signoz-otlp-headers/)'
  }
]

var exporting = !empty(signozOtlpEndpoint)
var exportingWithKey = exporting && signozKeyInVault

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption exists only in some regions and needs always-ready instances in each zone; a single-zone plan is the cost baseline this template sets.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:This is the public HTTP API; callers authenticate with function keys.
  // checkov:skip=CKV_AZURE_17:Client certificates are not used; function keys identify callers.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales per function group on its own; the HTTP group keeps alwaysReadyHttpInstances running and scales out from there.
  // checkov:skip=CKV_AZURE_213:App Service health check evicts instances of a fixed-size plan; Flex Consumption instances come and go with load. GET /api/health (anonymous) serves external probes.
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
    // Key Vault references resolve with this identity, which holds Key Vault Secrets User.
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: concat(appSettings, exporting ? otlpSettings : [], exportingWithKey ? otlpHeaderSettings : [])
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReadyHttpInstances > 0 ? [
          {
            name: 'http'
            instanceCount: alwaysReadyHttpInstances
          }
        ] : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Deployments sign in with Entra ID (azd); publishing with a user name and password stays off.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// The host's own log, visible without SigNoz: listeners that fail to start, Key Vault references that
// do not resolve, invocations and their failures.
resource hostLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'platform-logs'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
