// The Functions host's account: its state (timer status, locks, keys) and the deployment
// package, configured as Microsoft's Flex Consumption reference templates do. The archive
// lives in an account of its own (archive-storage.bicep). Keys are off: the host and the
// deployment sign in with the identity.
param name string
param location string
param tags object
param deploymentContainerName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: a network deny-by-default needs VNet integration and private endpoints; access is identity-only (keys off, no anonymous blobs, TLS 1.2, HTTPS).
  // checkov:skip=CKV_AZURE_59: same: the Function app reaches storage over its public endpoint with Entra ID; nothing is readable anonymously.
  // checkov:skip=CKV_AZURE_206: the host's state and the deployment package are rebuilt by the host and by azd deploy; locally redundant storage is what the reference templates use.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Multi-tenant mode: the timer queues one message per tenant here and collect_tenant reads
// them (collector/fanout.py QUEUE); the host makes its -poison queue itself. Harmless empty
// in single-tenant mode.
resource tenantQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'collector-tenants'
}

output name string = account.name
