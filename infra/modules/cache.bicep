// Valkey's place in Azure: Azure Managed Redis, which speaks the same protocol (RESP) and runs our
// Lua scripts; infra/README.md says why it was chosen over Valkey on Container Apps. TLS only, and a
// password (the database's access key) that goes straight into Key Vault, never into an output.

param name string
param location string
param tags object
@description('Azure Managed Redis SKU; Balanced_B0 (0.5 GB) is the smallest.')
param skuName string
@description('The vault that keeps the password.')
param keyVaultName string
@description('Reach the cache only through a private endpoint (see network.bicep).')
param privateNetwork bool

resource cache 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
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
    // Valkey's AUTH takes a password: the database's access key.
    accessKeysAuthentication: 'Enabled'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource password 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:The value is the cache's access key, rotated by regenerating the key (infra/README.md), not on a date.
  parent: vault
  name: 'valkey-password'
  properties: {
    value: database.listKeys().primaryKey
    contentType: 'text/plain; Azure Managed Redis access key'
  }
}

output id string = cache.id
output hostName string = cache.properties.hostName
output port int = database.properties.port
