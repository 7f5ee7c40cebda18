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
@description('The policy is locked already (the postprovision hook locked it): say Locked, since Storage refuses Unlocked for a locked policy and creates none Locked.')
param immutabilityPolicyLocked bool = false
@description('Private networking: no public endpoint; the app reaches the account through a private endpoint (network.bicep).')
param privateNetworking bool
@description('A second layer of encryption at rest (infrastructure encryption): only when the account is created.')
param infrastructureEncryption bool
@description('Data blobs and manifests move to Cool this many days after they were written (and to Cold 90 days later); 0: stay Hot.')
@minValue(0)
param coolAfterDays int = 0
@description('Data blobs and manifests are deleted this many days after they were written; 0: never.')
@minValue(0)
param deleteAfterDays int = 0
@description('Every source the collector has: their folders are what the retention rules act on (the _state folder never expires).')
param sourceNames array
@description('Days that deleted blobs, overwritten blob versions and deleted containers are kept, so a bad run can be undone.')
param retentionDays int = 30

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: public mode only (vnetEnabled false, the default): the app reaches the account over its public endpoint, identity-only (keys off, no anonymous blobs, TLS 1.2). Private mode denies by default; make checkov scans that mode without this skip.
  // checkov:skip=CKV_AZURE_59: public mode only, as above: private mode disables public network access, and make checkov scans it without this skip.
  // checkov:skip=CKV_AZURE_36: private mode sets bypass None, as Microsoft's Flex Consumption templates do: no trusted Azure service needs the data plane (the app comes through private endpoints; access logs are sent by the platform, not through the network).
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
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: privateNetworking ? 'None' : 'AzureServices'
      ipRules: []
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: infrastructureEncryption
    }
    // Version-level immutability with a default time-based retention policy, created
    // Unlocked: the Storage API creates no policy Locked. The postprovision hook locks it when
    // asked; from then on this says Locked, as a locked policy can never be unlocked again.
    immutableStorageWithVersioning: (immutabilityDays > 0) ? {
      enabled: true
      immutabilityPolicy: {
        immutabilityPeriodSinceCreationInDays: immutabilityDays
        state: immutabilityPolicyLocked ? 'Locked' : 'Unlocked'
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

// What the retention rules act on: every source's data folder and the manifests, never the
// collector's _state (a watermark must outlive the data it stands for).
var sourcePrefixes = [for source in sourceNames: '${outputContainerName}/${source}/']
var dataPrefixes = concat(sourcePrefixes, [
  '${outputContainerName}/_manifests/'
])

// Each write of a state blob keeps its previous version: keep those only for the retention.
// Under an immutability policy a version is deleted once its retention is over, not before.
var expireOldVersions = {
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

// Cool, then Cold 90 days later (Cool's 30-day minimum is long past, and readers seldom go
// back that far). Blobs are never modified, so creation and modification times agree.
var coolData = {
  name: 'cool-data'
  enabled: true
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      prefixMatch: dataPrefixes
    }
    actions: {
      baseBlob: {
        tierToCool: {
          daysAfterCreationGreaterThan: coolAfterDays
        }
        tierToCold: {
          daysAfterCreationGreaterThan: coolAfterDays + 90
        }
      }
    }
  }
}

// Expiry for data-protection law. With versioning on, a deleted blob first becomes a
// previous version, which expire-old-versions removes (it is older than retentionDays), and
// then stays soft-deleted for retentionDays: gone for good at most retentionDays later.
var deleteData = {
  name: 'delete-data'
  enabled: true
  type: 'Lifecycle'
  definition: {
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      prefixMatch: dataPrefixes
    }
    actions: {
      baseBlob: {
        delete: {
          daysAfterCreationGreaterThan: deleteAfterDays
        }
      }
    }
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  dependsOn: [
    blobService // the rule acts on versions, which the blob service turns on
  ]
  properties: {
    policy: {
      rules: concat([expireOldVersions], (coolAfterDays > 0) ? [coolData] : [], (deleteAfterDays > 0) ? [deleteData] : [])
    }
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output outputContainerId string = outputContainer.id
