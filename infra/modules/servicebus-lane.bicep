// One priority lane: its work queue and its dead-letter queue, and the app identity's roles on both,
// each scoped to the queue. servicebus.bicep makes one per priority (shared/brokers/lanes.py).

param namespaceName string
@description('The lane\'s queue: tasks (normal), tasks.high or tasks.low.')
param queueName string
@description('The identity that sends, receives and reads the backlog.')
param principalId string

// A failed attempt is re-sent by the app as a new message, and a task out of attempts is put in the
// dead-letter queue by the app; the delivery limit only catches crashes. It equals the registry's cap
// on max_attempts (shared/pipeline/registry.py, MAX_ATTEMPTS_LIMIT) and the RabbitMQ extension's own
// redelivery limit; tests/test_infra.py checks that the numbers agree.
var maxDeliveryCount = 5

var roles = {
  sender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender: POST /api/tasks
  receiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver: the trigger
  // Azure Service Bus Data Owner: reading the queue's runtime properties (the backlog timer, and the
  // scale controller sizing the trigger) needs the Manage claim, which only this role grants. It is
  // scoped to this one queue, never the namespace; infra/README.md explains the choice.
  owner: '090c5cfd-751d-490a-894a-3ce6f1109419'
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: namespaceName
}

// Every dead letter of the lane in one queue: the app sends the ones it decides on here (no client may
// write to a queue's own dead-letter subqueue), and the work queue forwards its own dead letters here.
resource deadLetters 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: '${queueName}.dead-letter'
  properties: {
    // A redrive scan abandons the letters it keeps; they must not move on to this queue's own
    // dead-letter subqueue after a few scans.
    maxDeliveryCount: 1000
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
    enablePartitioning: false
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    forwardDeadLetteredMessagesTo: deadLetters.name
    maxDeliveryCount: maxDeliveryCount
    // Nothing renews it (the extension renews locks only for functions taking one message at a time),
    // so it must outlast a whole batch and the host completing it: five minutes, the most Service Bus
    // allows, against host.json's functionTimeout of four (tests/test_azure_lock_budget.py). It is also
    // how long a message of a crashed instance waits before it is delivered again.
    lockDuration: 'PT5M'
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

// Owner on the dead-letter queue: sending dead letters, reading its count (the backlog), and receiving
// from it to redrive.
resource deadLetterOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, principalId, roles.owner)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.owner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output queueName string = queue.name
