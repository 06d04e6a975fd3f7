// Every secret the app uses, and only that: the SigNoz ingestion key as the OTLP header it travels in
// (Valkey needs none: the app signs in to the cache with a Microsoft Entra token). App settings hold
// Key Vault references; the app's identity may read secrets and nothing else, the deployer may set them.

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
@description('Who runs azd (AZURE_PRINCIPAL_ID): may set secrets by hand. Empty: nobody.')
param deployerPrincipalId string
@allowed([
  'default'
  'recover'
])
@description('recover: bring back a soft-deleted vault of the same name (purge protection keeps the name 90 days).')
param createMode string
@description('Log Analytics workspace for the vault\'s audit log.')
param logAnalyticsWorkspaceId string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

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
    createMode: createMode
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

// A vault of its own for this app, so the vault is the narrowest scope that covers its secrets.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The documented `az keyvault secret set` is a data-plane write, which an RBAC vault allows only to a
// role holder: Key Vault Secrets Officer (set, list, delete secrets; no keys, no role changes). No
// principalType: the deployer is a user on a laptop and a service principal in CI, and ARM resolves it.
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
  }
}

// Every secret read, write and denied access: a Key Vault reference that does not resolve shows here.
resource auditLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'platform-logs'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
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

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
