// The Function app on the Flex Consumption plan, running as the user-assigned identity.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
@description('The host account (host-storage.bicep): host state and the deployment package.')
param hostStorageAccountName string
param deploymentContainerName string
param appInsightsConnectionString string
@description('Collector settings (name -> value): every setting the code reads.')
param collectorSettings object
@description('Private networking: the app subnet the app joins (network.bicep); empty: none.')
param appSubnetId string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: a missed hourly run is caught up by the next one; zone redundancy is not worth its cost for a batch collector.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var hostStorage = 'https://${hostStorageAccountName}'
var storageSuffix = environment().suffixes.storage

var hostSettings = {
  // Identity-based host storage, as the reference templates set it: no connection string.
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: '${hostStorage}.blob.${storageSuffix}'
  AzureWebJobsStorage__queueServiceUri: '${hostStorage}.queue.${storageSuffix}'
  AzureWebJobsStorage__tableServiceUri: '${hostStorage}.table.${storageSuffix}'
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var allSettings = union(hostSettings, collectorSettings)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: the app has no HTTP triggers; azd deploy publishes through the app's own endpoint (/api/publish, Entra ID only: publishing passwords are off below), so its public access stays on, the exception docs/deploy.md names.
  // checkov:skip=CKV_AZURE_17: no HTTP triggers to protect with client certificates; requiring them could block the platform's own calls to the host.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design; a timer app needs no standby instances.
  // checkov:skip=CKV_AZURE_213: no HTTP endpoint to health-check; the alerts in alerts.bicep watch the timer's outcomes instead.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'collector' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    // Flex Consumption sends all outbound traffic through the subnet: no route-all switch.
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage}.blob.${storageSuffix}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing passwords: deployments go through Entra ID (azd uses it).
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
