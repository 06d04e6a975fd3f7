// The function app on Flex Consumption: Python 3.11, the HTTP group kept warm, one user-assigned
// identity for everything, and app settings that hold no secret (Key Vault references instead).
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

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int
@minValue(1)
@maxValue(1000)
@description('Upper bound on instances across all functions; also caps the cost of a load spike.')
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
param secretRefreshSeconds int
param otlpEndpoint string

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
      // No secret here: secrets are Key Vault references. Flex Consumption takes the worker runtime
      // from functionAppConfig, never from FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION.
      appSettings: [
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
        {
          name: 'VALKEY_PASSWORD'
          value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/valkey-password/)'
        }
        // The app re-reads the same secret itself, so a rotated password needs no restart (the platform
        // re-reads references only about once a day). A plain URI: a reference would be resolved away.
        {
          name: 'VALKEY_PASSWORD_SECRET_URI'
          value: '${keyVaultUri}secrets/valkey-password'
        }
        {
          name: 'SECRET_REFRESH_SECONDS'
          value: string(secretRefreshSeconds)
        }
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

        // OpenTelemetry to SigNoz: the exporter reads the standard variables; the key is a secret.
        {
          name: 'OTEL_EXPORTER_OTLP_ENDPOINT'
          value: otlpEndpoint
        }
        {
          name: 'OTEL_EXPORTER_OTLP_HEADERS'
          value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/signoz-otlp-headers/)'
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

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
