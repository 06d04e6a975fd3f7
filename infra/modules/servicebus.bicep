// The task queue: the HTTP function sends, the processing function receives, the timer function
// reads the backlog. Identity only (no SAS keys); message id = task id, so a resent task within the
// duplicate detection window is dropped by Service Bus itself.

param name string
param location string
param tags object
param queueName string
@description('The identity that sends, receives and reads the backlog.')
param principalId string

// The task registry caps max_attempts at 5 (shared/registry.py, MAX_ATTEMPTS_LIMIT), which is the
// RabbitMQ extension's own redelivery limit. Service Bus must allow exactly as many deliveries, so a
// task gets every attempt it asked for and the fifth failure lands in the dead-letter queue.
// tests/test_infra.py checks that the two numbers agree.
var maxDeliveryCount = 5

var roles = {
  sender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender: POST /api/tasks
  receiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver: the trigger
  // Azure Service Bus Data Owner: reading the queue's runtime properties (the backlog timer, and the
  // scale controller sizing the trigger) needs the Manage claim, which only this role grants. It is
  // scoped to this one queue, never the namespace; infra/README.md explains the choice.
  owner: '090c5cfd-751d-490a-894a-3ce6f1109419'
}

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

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    maxDeliveryCount: maxDeliveryCount
    // The lock is renewed while a batch runs (host.json maxAutoLockRenewalDuration); a minute bounds
    // how long a message from a crashed instance waits before another instance gets it.
    lockDuration: 'PT1M'
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    requiresSession: false
    enablePartitioning: false
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, roles.sender)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.sender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, roles.receiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.receiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource owner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(queue.id, principalId, roles.owner)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.owner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output queueName string = queue.name
