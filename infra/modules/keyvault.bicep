// Every secret the app uses, and only those: the Valkey password (written by cache.bicep) and the
// SigNoz ingestion key as the OTLP header it travels in. App settings hold Key Vault references;
// the app's identity may read secrets and nothing else.

param name string
param location string
param tags object
@description('The identity that reads the secrets (Key Vault references, and the app refreshing them).')
param principalId string
@secure()
@description('SigNoz ingestion key; empty keeps the secret already in the vault (set it once, or with az keyvault secret set).')
param signozIngestionKey string
@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled: the vault is reached only through its private endpoint (see network.bicep).')
param publicNetworkAccess string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Denied when vnetEnabled is true; without the VNet, Flex Consumption has no fixed outbound address to allow, so access rests on RBAC.
  // checkov:skip=CKV_AZURE_189:As above: public network access is disabled when vnetEnabled is true.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: publicNetworkAccess == 'Disabled' ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The OTLP exporter reads its headers from one setting, and a Key Vault reference replaces a whole
// setting, so the secret holds the header as OTEL_EXPORTER_OTLP_HEADERS wants it.
resource signozHeaders 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(signozIngestionKey)) {
  // checkov:skip=CKV_AZURE_41:The key is rotated in SigNoz, not on a date; an expiry would only stop telemetry at an arbitrary moment.
  // checkov:skip=CKV_AZURE_114:contentType is set below; checkov does not read the body of a conditional resource.
  parent: vault
  name: 'signoz-otlp-headers'
  properties: {
    value: 'signoz-ingestion-key=${signozIngestionKey}'
    contentType: 'text/plain; OTLP headers'
  }
}

// A vault of its own for this app, so the vault is the narrowest scope that covers both secrets.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
