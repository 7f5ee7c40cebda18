// The archive account: the archive container and nothing else, written by the collector
// only (its identity may write that container; the Functions host lives in another account).
// Keys are off: the collector signs in with the identity.
param name string
param location string
param tags object
param outputContainerName string
@description('Replication of the account (main.bicep says which exists where).')
param skuName string
@description('Days every blob version stays immutable (version-level WORM, unlocked); 0: off. Settable only when the account is created.')
@minValue(0)
@maxValue(146000)
param immutabilityDays int = 0
@description('Lock the policy (irreversible); once locked it must stay true.')
param immutabilityLocked bool = false
@description('Days that deleted blobs, overwritten blob versions and deleted containers are kept, so a bad run can be undone.')
param retentionDays int = 30

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: a network deny-by-default needs VNet integration and private endpoints; access is identity-only (keys off, no anonymous blobs, TLS 1.2, HTTPS).
  // checkov:skip=CKV_AZURE_59: same: the Function app reaches storage over its public endpoint with Entra ID; nothing is readable anonymously.
  // checkov:skip=CKV_AZURE_206: replication is the deployer's choice (main.bicep storageRedundancy); its default, LRS, is the only one every Flex Consumption region offers, and the README says when to pick ZRS, GZRS or GRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
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
    // Version-level immutability with a default time-based retention policy. Unlocked unless
    // asked: a locked policy can be extended but never shortened, and never unlocked again.
    immutableStorageWithVersioning: (immutabilityDays > 0) ? {
      enabled: true
      immutabilityPolicy: {
        immutabilityPeriodSinceCreationInDays: immutabilityDays
        state: immutabilityLocked ? 'Locked' : 'Unlocked'
        allowProtectedAppendWrites: false
      }
    } : null
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: retentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: retentionDays
    }
  }
}

resource outputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: outputContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Each write of a state blob keeps its previous version: keep those only for the retention.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  dependsOn: [
    blobService // the rule acts on versions, which the blob service turns on
  ]
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-old-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
            }
            actions: {
              version: {
                delete: {
                  daysAfterCreationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output outputContainerId string = outputContainer.id
