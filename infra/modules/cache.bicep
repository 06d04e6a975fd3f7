// Valkey's place in Azure: Azure Managed Redis, which speaks the same protocol (RESP) and runs our
// Lua scripts; infra/README.md says why it was chosen over Valkey on Container Apps. TLS only, and no
// password at all: access keys are off, and the app signs in with a Microsoft Entra token of its
// identity (shared/secrets/entra.py), which an access policy assignment below lets in.

param name string
param location string
param tags object
@description('Azure Managed Redis SKU; Balanced_B0 (0.5 GB) is the smallest.')
param skuName string
@description('Reach the cache only through a private endpoint (see network.bicep).')
param privateNetwork bool
@description('The identity the app signs in with (its object id is the Redis user name).')
param principalId string
@description('Log Analytics workspace for the connection and authentication events.')
param logAnalyticsWorkspaceId string

resource cache 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    // A replica in another node takes over on failure (unplanned failover: 10 to 15 s, within the
    // processor's 20 s patience for Valkey; a planned one under 1 s).
    highAvailability: 'Enabled'
    publicNetworkAccess: privateNetwork ? 'Disabled' : 'Enabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cache
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    // One shard: each of our scripts touches several keys (a task's hash and the counters), which a
    // clustered policy refuses across hash slots (CROSSSLOT).
    clusteringPolicy: 'NoCluster'
    // Task status, results and idempotency keys expire by TTL; evicting them early would lose state.
    evictionPolicy: 'NoEviction'
    // Microsoft Entra tokens only: there is no key to store, leak or rotate.
    accessKeysAuthentication: 'Disabled'
    // Every write appended to disk once a second: if both the primary and its replica are lost, the
    // cache comes back from the log, missing at most the last second or so (infra/README.md).
    persistence: {
      aofEnabled: true
      aofFrequency: '1s'
      rdbEnabled: false
    }
  }
}

// The built-in 'default' access policy is full data access, which the scripts (EVALSHA, SCRIPT LOAD)
// and the keys of every kind need.
resource appAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: database
  name: guid(database.id, principalId, 'default')
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: principalId
    }
  }
}

resource databaseLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'platform-logs'
  scope: database
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        // New connections, AUTH (with its status: a refused token shows here) and disconnections.
        category: 'ConnectionEvents'
        enabled: true
      }
    ]
  }
}

resource cacheMetrics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'platform-metrics'
  scope: cache
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = cache.id
output hostName string = cache.properties.hostName
output port int = database.properties.port
