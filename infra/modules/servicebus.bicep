// The task queues, a lane per priority: the HTTP function sends, each lane's processing function
// receives, the timer function reads the backlog. Identity only (no SAS keys); message id = task id, so a resent task within the
// duplicate detection window is dropped by Service Bus itself.

param name string
param location string
param tags object
@description('The normal lane\'s queue; the high and low lanes are <queueName>.high and .low.')
param queueName string
@description('The identity that sends, receives and reads the backlog.')
param principalId string
@description('Log Analytics workspace for the namespace\'s operational log.')
param logAnalyticsWorkspaceId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// A lane (a queue and its dead-letter queue) per priority: a high task waits only behind high tasks,
// and each lane's function scales on its own queue's depth.
var lanes = [
  ''
  '.high'
  '.low'
]

module lane 'servicebus-lane.bicep' = [
  for suffix in lanes: {
    name: 'servicebus-lane${suffix}'
    params: {
      namespaceName: namespace.name
      queueName: '${queueName}${suffix}'
      principalId: principalId
    }
  }
]

// Management operations on the namespace and its queues (runtime audit logs need the Premium tier).
resource operationalLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'platform-logs'
  scope: namespace
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'OperationalLogs'
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

output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output queueName string = lane[0].outputs.queueName
