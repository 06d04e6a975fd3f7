// Optional (vnetEnabled): one private endpoint per target, and the private DNS zone that makes the
// target's usual host name resolve to it from inside the virtual network.

param location string
param tags object
param vnetId string
param subnetId string
@description('Each target: name, resourceId, groupId (the sub-resource) and zone (its privatelink DNS zone).')
param targets array

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for target in targets: {
  name: target.zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (target, i) in targets: {
  parent: zones[i]
  name: 'vnet'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for target in targets: {
  name: 'pe-${target.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: target.name
        properties: {
          privateLinkServiceId: target.resourceId
          groupIds: [
            target.groupId
          ]
        }
      }
    ]
  }
}]

resource dnsGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (target, i) in targets: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: target.name
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]
