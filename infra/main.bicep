// tasklane on Azure: `azd up` provisions this and deploys the app. One resource group per azd
// environment; infra/README.md describes each resource and the choices behind it.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Region for every resource; it must offer Flex Consumption and Azure Managed Redis.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

// -- scale --------------------------------------------------------------------------------------------
@allowed([
  512
  2048
  4096
])
@description('Memory of each function app instance, in MB.')
param instanceMemoryMB int = 2048
@minValue(1)
@maxValue(1000)
@description('Most on-demand instances of each scale group: the HTTP functions together, each lane\'s queue function, the timer.')
param maximumInstanceCount int = 40
@minValue(0)
@description('HTTP instances kept warm (billed while idle); 0 lets the API scale to zero.')
param alwaysReadyHttpInstances int = 1

// -- services -----------------------------------------------------------------------------------------
@description('Azure Managed Redis SKU for task state.')
param cacheSku string = 'Balanced_B0'
@description('Put storage, Key Vault and the cache behind private endpoints in a VNet (needs the Microsoft.App provider registered).')
param vnetEnabled bool = false
@description('Where SigNoz ingests OTLP, e.g. https://ingest.us.signoz.cloud:443; empty exports nothing.')
param signozOtlpEndpoint string = ''
@secure()
@description('SigNoz ingestion key; written to Key Vault. Empty keeps the one already there, if any.')
param signozIngestionKey string = ''
@description('The vault already holds the key (set by hand, or by an earlier provision): send it with the OTLP data.')
param signozKeyInVault bool = false
@description('Object id of whoever runs azd (azd sets AZURE_PRINCIPAL_ID): may set Key Vault secrets by hand.')
param principalId string = ''
@allowed([
  'default'
  'recover'
])
@description('recover: bring back the soft-deleted vault of this environment (a name stays taken 90 days).')
param keyVaultCreateMode string = 'default'
@minValue(30)
@description('Days Log Analytics keeps the platform logs.')
param logRetentionInDays int = 30

// -- the app's own settings (defaults as in shared/pipeline/settings.py) -----------------------------------
param tasksQueue string = 'tasks'
param maxBacklog int = 100000
param maxBodyBytes int = 4194304
@description('Tasks per second each caller (function key) may submit; 0 turns the limit off.')
param rateLimit string = '0'
@description('How many tasks a caller may submit at once above its rate.')
param rateBurst int = 100
param statusTtlSeconds int = 604800
param backlogSchedule string = '*/30 * * * * *'

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  app: 'tasklane'
}
var appName = 'func-tasklane-${token}'
var deploymentContainerName = 'app-package-${take(token, 8)}'

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: group
  params: {
    name: 'id-tasklane-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: {
    name: 'log-tasklane-${token}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: group
  params: {
    name: 'vnet-tasklane-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: group
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    principalId: identity.outputs.principalId
    privateNetwork: vnetEnabled
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: group
  params: {
    name: 'sb-tasklane-${token}'
    location: location
    tags: tags
    queueName: tasksQueue
    principalId: identity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.id
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: group
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    signozIngestionKey: signozIngestionKey
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    deployerPrincipalId: principalId
    createMode: keyVaultCreateMode
    logAnalyticsWorkspaceId: monitoring.outputs.id
  }
}

module cache 'modules/cache.bicep' = {
  name: 'cache'
  scope: group
  params: {
    name: 'redis-tasklane-${token}'
    location: location
    tags: tags
    skuName: cacheSku
    privateNetwork: vnetEnabled
    principalId: identity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.id
  }
}

module privateEndpoints 'modules/private-endpoints.bicep' = if (vnetEnabled) {
  name: 'private-endpoints'
  scope: group
  params: {
    location: location
    tags: tags
    vnetId: vnetEnabled ? network.outputs.id : ''
    subnetId: vnetEnabled ? network.outputs.endpointSubnetId : ''
    targets: [
      {
        name: 'blob'
        resourceId: storage.outputs.id
        groupId: 'blob'
        zone: 'privatelink.blob.${environment().suffixes.storage}'
      }
      {
        name: 'table'
        resourceId: storage.outputs.id
        groupId: 'table'
        zone: 'privatelink.table.${environment().suffixes.storage}'
      }
      {
        name: 'vault'
        resourceId: keyVault.outputs.id
        groupId: 'vault'
        zone: 'privatelink.vaultcore.azure.net'
      }
      {
        name: 'cache'
        resourceId: cache.outputs.id
        groupId: 'redisEnterprise'
        zone: 'privatelink.redis.azure.net'
      }
    ]
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: group
  // The app resolves its Key Vault reference and signs in to the cache as it starts: the secret, the
  // identity's right to read it and its access to the cache must exist first.
  dependsOn: [
    cache
    keyVault
    privateEndpoints
  ]
  params: {
    name: appName
    planName: 'plan-tasklane-${token}'
    location: location
    tags: tags
    environmentName: environmentName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    queueName: serviceBus.outputs.queueName
    keyVaultUri: keyVault.outputs.uri
    cacheHostName: cache.outputs.hostName
    cachePort: cache.outputs.port
    appSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    logAnalyticsWorkspaceId: monitoring.outputs.id
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    maxBacklog: maxBacklog
    maxBodyBytes: maxBodyBytes
    rateLimit: rateLimit
    rateBurst: rateBurst
    statusTtlSeconds: statusTtlSeconds
    backlogSchedule: backlogSchedule
    signozOtlpEndpoint: signozOtlpEndpoint
    signozKeyInVault: signozKeyInVault || !empty(signozIngestionKey)
  }
}

// azd writes these into the environment (.azure/<env>/.env); none of them is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_LOG_ANALYTICS_WORKSPACE_NAME string = monitoring.outputs.name
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace
output SERVICEBUS_QUEUE string = serviceBus.outputs.queueName
