// Platform logs that do not depend on SigNoz: the Functions host's own log (a listener that cannot start,
// a Key Vault reference that does not resolve), Service Bus and Key Vault operations, and the cache's
// connection and authentication events. Each resource's module sends its diagnostic settings here.

param name string
param location string
param tags object
@minValue(30)
@description('Days the workspace keeps logs (30 is included in the ingestion price).')
param retentionInDays int

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Access by Azure RBAC on the workspace or the resource, not by a shared workspace key.
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

output id string = workspace.id
output name string = workspace.name
