// The function's identity: what the Functions host needs on its own account, as Microsoft's
// reference templates grant it, and on the archive account only the archive container.
param hostStorageAccountName string
param archiveStorageAccountName string
param outputContainerName string
param appInsightsName string
param principalId string
@description('Entra object ids (users, groups, service principals) that may read the archive container: operators, for the portal and python -m collector status / verify.')
param archiveReaderIds array

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource archiveAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: archiveStorageAccountName
}

resource archiveBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: archiveAccount
  name: 'default'
}

resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: archiveBlobs
  name: outputContainerName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// The collector writes the archive container, and nothing else of the archive account.
resource archiveWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outputContainer.id, principalId, roles.storageBlobDataContributor)
  scope: outputContainer
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// Operators look without being able to change anything. No principalType: a reader may be
// a user, a group or a service principal.
resource archiveReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for reader in archiveReaderIds: {
  name: guid(outputContainer.id, reader, roles.storageBlobDataReader)
  scope: outputContainer
  properties: {
    principalId: reader
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataReader)
  }
}]

// The Functions host (AzureWebJobsStorage) and the deployment package, on the host account.
var hostRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource hostAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in hostRoles: {
  name: guid(hostAccount.id, principalId, role)
  scope: hostAccount
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
  }
}]

// Telemetry into an Application Insights resource that accepts only Entra ID.
resource telemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}
