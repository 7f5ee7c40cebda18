// Teams call-log collector: everything `azd up` provisions, in one new resource group.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags the resources.')
param environmentName string

@minLength(1)
@description('Region of all resources (one that offers Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Comma-separated subset of sms, direct_routing, pstn.')
param collectorSources string = 'sms,direct_routing'

@description('Where sources with no watermark start (ISO 8601 UTC); empty: the day before the first run.')
param collectorStart string = ''

@description('NCRONTAB schedule of the timer (six fields, with seconds).')
param collectorSchedule string = '0 5 * * * *'

@description('Output container of the archive.')
param outputContainerName string = 'callrecords'

@description('Minutes a run stays behind now (COLLECTOR_LAG_MINUTES).')
param lagMinutes int = 60

@description('Allowed lateness in hours before a day is settled; 0 turns settling off.')
param latenessHours int = 48

@description('Microsoft Graph cloud: Global, USGovL4 (GCC High) or USGovL5 (DoD).')
@allowed([
  'Global'
  'USGovL4'
  'USGovL5'
])
param graphCloud string = 'Global'

@description('Grant the identity CallRecords.Read.All through the Microsoft Graph Bicep extension (the deployer must be allowed to grant app roles). When false, grant it by hand: see the README.')
param grantGraphPermission bool = true

@description('Hours without a successful collection before an alert fires.')
param noSuccessAlertHours int = 3

@description('Failed runs within 6 hours that fire an alert.')
param failureAlertCount int = 2

@description('Email for alerts; empty: alerts show in the portal only.')
param alertEmail string = ''

var graphEndpoints = {
  Global: 'https://graph.microsoft.com'
  USGovL4: 'https://graph.microsoft.us'
  USGovL5: 'https://dod-graph.microsoft.us'
}
var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-calllogs-${token}'
var deploymentContainerName = 'app-package-${take(token, 12)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-calllogs-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stcalllogs${take(token, 13)}'
    location: location
    tags: tags
    outputContainerName: outputContainerName
    deploymentContainerName: deploymentContainerName
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-calllogs-${token}'
    appInsightsName: 'appi-calllogs-${token}'
    location: location
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    outputContainerName: outputContainerName
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
  }
}

module function 'modules/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-calllogs-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    // Every setting the collector reads (collector/settings.py SETTING_NAMES) is set here
    // or has a default in the code; tests/test_infra.py keeps the two in step.
    collectorSettings: {
      GRAPH_ENDPOINT: graphEndpoints[graphCloud]
      AZURE_CLIENT_ID: identity.outputs.clientId
      COLLECTOR_SOURCES: collectorSources
      COLLECTOR_STORAGE__blobServiceUri: storage.outputs.blobEndpoint
      COLLECTOR_STORAGE__clientId: identity.outputs.clientId
      COLLECTOR_CONTAINER: outputContainerName
      COLLECTOR_START: collectorStart
      COLLECTOR_LAG_MINUTES: string(lagMinutes)
      COLLECTOR_LATENESS_HOURS: string(latenessHours)
      COLLECTOR_SCHEDULE: collectorSchedule
      COLLECTOR_TIME_BUDGET_SECONDS: '1200'
      COLLECTOR_LEASE_SECONDS: '300'
    }
  }
  dependsOn: [
    rbac
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    appInsightsId: monitoring.outputs.appInsightsId
    functionAppName: function.outputs.name
    location: location
    tags: tags
    noSuccessHours: noSuccessAlertHours
    failureCount: failureAlertCount
    alertEmail: alertEmail
  }
}

module graphPermission 'modules/graph-permission.bicep' = if (grantGraphPermission) {
  name: 'graphPermission'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output COLLECTOR_CONTAINER string = outputContainerName
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output GRAPH_ENDPOINT string = graphEndpoints[graphCloud]
output GRAPH_PERMISSION_GRANTED bool = grantGraphPermission
