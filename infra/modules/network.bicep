// Optional (vnetEnabled): a virtual network the function app sends its outbound traffic through, and
// a subnet for the private endpoints of storage, Key Vault and the cache. Service Bus stays public:
// private endpoints need its Premium tier (infra/README.md).

param name string
param location string
param tags object

resource appSubnetRules 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${name}-app'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource endpointSubnetRules 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${name}-private-endpoints'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.40.0.0/16'
      ]
    }
    subnets: [
      {
        // Flex Consumption integrates through a subnet delegated to Microsoft.App/environments.
        name: 'app'
        properties: {
          addressPrefix: '10.40.0.0/24'
          networkSecurityGroup: {
            id: appSubnetRules.id
          }
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: '10.40.1.0/24'
          networkSecurityGroup: {
            id: endpointSubnetRules.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

output id string = vnet.id
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'app')
output endpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'private-endpoints')
