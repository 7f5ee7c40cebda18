// The Functions host's account: its state (timer status, locks, keys) and the deployment
// package, configured as Microsoft's Flex Consumption reference templates do. The archive
// lives in an account of its own (archive-storage.bicep). Keys are off: the host and the
// deployment sign in with the identity.
param name string
param location string
param tags object
param deploymentContainerName string
@description('Private networking: no public endpoint; the app reaches the account through private endpoints (network.bicep).')
param privateNetworking bool
@description('A second layer of encryption at rest (infrastructure encryption): only when the account is created.')
param infrastructureEncryption bool

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: public mode only (vnetEnabled false, the default): the app reaches the account over its public endpoint, identity-only (keys off, no anonymous blobs, TLS 1.2). Private mode denies by default; make checkov scans that mode without this skip.
  // checkov:skip=CKV_AZURE_59: public mode only, as above: private mode disables public network access, and make checkov scans it without this skip.
  // checkov:skip=CKV_AZURE_36: private mode sets bypass None, as Microsoft's Flex Consumption templates do: no trusted Azure service needs the data plane (the app comes through private endpoints; access logs are sent by the platform, not through the network).
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
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: privateNetworking ? 'None' : 'AzureServices'
      ipRules: []
    }
    // Queues and tables are doubly encrypted only with account-scoped keys.
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: infrastructureEncryption
      services: infrastructureEncryption ? {
        queue: {
          keyType: 'Account'
        }
        table: {
          keyType: 'Account'
        }
      } : null
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
// them (collector/tenants/fanout.py QUEUE); the host makes its -poison queue itself. Harmless empty
// in single-tenant mode.
resource tenantQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'collector-tenants'
}

output name string = account.name
