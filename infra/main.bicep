// Teams call-log collector: everything `azd up` provisions, in one new resource group.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags the resources.')
param environmentName string

// The regions that offer Flex Consumption, as the official Flex Consumption azd template
// (Azure-Samples/functions-quickstart-python-azd-timer) lists them, less its early-access
// region eastus2euap. Elsewhere the plan fails to create. All are public-cloud regions:
// Azure Government does not offer Flex Consumption (as of mid-2026).
@minLength(1)
@description('Region of all resources: a public-cloud region that offers Flex Consumption (Azure Government does not).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Replication of the archive account (the host account is always locally redundant): Standard_LRS (the default) exists in every allowed region; Standard_ZRS and Standard_GZRS/RAGZRS need a region with availability zones, Standard_GRS/RAGRS/GZRS/RAGZRS a paired region. See the README.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageRedundancy string = 'Standard_LRS'

@description('Days each version of an archive blob stays immutable (version-level WORM with a default retention policy, left unlocked); 0 (the default): off. Only when the archive account is created.')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 0

@description('Lock the archive\'s immutability policy: irreversible (it can then be extended, never shortened or removed). Once locked, in the portal or here, keep this true: provisioning cannot set a locked policy back to unlocked.')
param archiveImmutabilityLocked bool = false

@description('Comma-separated subset of sms, direct_routing, pstn, pstn_blocked_users, pstn_dialout_report.')
param collectorSources string = 'sms,direct_routing'

@description('Multi-tenant mode: create an app registration whose federated credential trusts the function\'s identity, and collect the tenants of collectorTenants through it (each consents once). Off: the identity\'s own tenant only.')
param multiTenant bool = false

@description('Multi-tenant mode: comma-separated ids of the customer tenants to collect.')
param collectorTenants string = ''

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

@description('Hours without a successful collection before an alert fires.')
param noSuccessAlertHours int = 3

@description('Failed runs within 6 hours that fire an alert.')
param failureAlertCount int = 2

@description('Hours beyond COLLECTOR_LAG_MINUTES a source\'s watermark may lag before an alert fires.')
@minValue(1)
param lagAlertHours int = 3

@description('Failed runs of one source one after another that fire an alert.')
@minValue(1)
param failedRunsAlertCount int = 3

@description('When this deployment runs (UTC); leave the default. The "no collection" alert stays quiet until noSuccessAlertHours + 1 h after it.')
param deployedAt string = utcNow('u')

@description('Email for alerts; empty: alerts show in the portal only.')
param alertEmail string = ''

// Graph follows the cloud deployed to (an identity of one cloud gets no tokens for another's
// Graph). Only the public cloud can get here: Flex Consumption is not offered in Azure
// Government, so `location` allows public-cloud regions only and a Government deployment
// stops at parameter validation, before anything is created.
var graphEndpoints = {
  AzureCloud: 'https://graph.microsoft.com'
  AzureUSGovernment: 'https://graph.microsoft.us'
}
var graphEndpoint = graphEndpoints[environment().name]
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

module hostStorage 'modules/host-storage.bicep' = {
  name: 'hostStorage'
  scope: rg
  params: {
    name: 'sthost${take(token, 18)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module archiveStorage 'modules/archive-storage.bicep' = {
  name: 'archiveStorage'
  scope: rg
  params: {
    name: 'stcalllogs${take(token, 13)}'
    location: location
    tags: tags
    outputContainerName: outputContainerName
    skuName: storageRedundancy
    immutabilityDays: archiveImmutabilityDays
    immutabilityLocked: archiveImmutabilityLocked
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
    hostStorageAccountName: hostStorage.outputs.name
    archiveStorageAccountName: archiveStorage.outputs.name
    outputContainerName: outputContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    principalId: identity.outputs.principalId
  }
}

module multiTenantApp 'modules/multi-tenant-app.bicep' = if (multiTenant) {
  name: 'multiTenantApp'
  scope: rg
  params: {
    uniqueName: 'calllogs-collector-${token}'
    displayName: 'Teams call-log collector (${environmentName})'
    identityPrincipalId: identity.outputs.principalId
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
    hostStorageAccountName: hostStorage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    // Every setting the collector reads (collector/settings.py SETTING_NAMES) is set here
    // or has a default in the code; tests/test_infra.py keeps the two in step.
    collectorSettings: {
      GRAPH_ENDPOINT: graphEndpoint
      AZURE_CLIENT_ID: identity.outputs.clientId
      COLLECTOR_SOURCES: collectorSources
      COLLECTOR_STORAGE__blobServiceUri: archiveStorage.outputs.blobEndpoint
      COLLECTOR_STORAGE__clientId: identity.outputs.clientId
      COLLECTOR_CONTAINER: outputContainerName
      COLLECTOR_START: collectorStart
      COLLECTOR_LAG_MINUTES: string(lagMinutes)
      COLLECTOR_LATENESS_HOURS: string(latenessHours)
      COLLECTOR_SCHEDULE: collectorSchedule
      COLLECTOR_TIME_BUDGET_SECONDS: '1200'
      COLLECTOR_LEASE_SECONDS: '300'
      COLLECTOR_TENANTS: multiTenant ? collectorTenants : ''
      COLLECTOR_APP_CLIENT_ID: multiTenant ? multiTenantApp.outputs.appId : ''
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
    lagMinutes: lagMinutes
    latenessHours: latenessHours
    lagAlertHours: lagAlertHours
    failedRunsAlertCount: failedRunsAlertCount
    deployedAt: deployedAt
    multiTenant: multiTenant
    alertEmail: alertEmail
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = function.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = archiveStorage.outputs.name
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output COLLECTOR_CONTAINER string = outputContainerName
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output GRAPH_ENDPOINT string = graphEndpoint
output COLLECTOR_APP_CLIENT_ID string = multiTenant ? multiTenantApp.outputs.appId : ''
output MULTI_TENANT bool = multiTenant
