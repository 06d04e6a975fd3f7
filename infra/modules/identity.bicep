// The one identity the function app runs as: host storage, deployment package, Service Bus,
// Key Vault references and the app's own Key Vault reads all use it. A user-assigned identity
// exists before the app does, so its role assignments are in place when the app first starts.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
